"""Evaluation config: `--config=configs/evaluate.py --config.checkpoint=PATH --workdir=DIR`.

PATH is a pretraining or interactive run's workdir (its latest checkpoint) or one milestone inside it
(`RUN/milestones/chck_400K`). On an Austen-pretrained tiny student:
  python -m storyjax.main --config=configs/evaluate.py --config.checkpoint=runs/austen \
      --config.blimp_dir=../shared/data/blimp --config.data.name=text_files \
      --config.data.path=../shared/data/corpora/austen --workdir=runs/austen_eval
writes eval/blimp.json (accuracy per paradigm file and overall), eval/perplexity.json and
eval/stories.json (teacher grades with 95% intervals, unscorable rate, lengths, distinct-1/2, repetition,
entropy per word: the student's surprisal of its own stories per whitespace word). Set
--config.stories.num_openings=0 to skip the stories, --config.teacher.* to grade with an LLM.
"""

import ml_collections

from configs import interactive as interactive_config  # the sampling and teacher sections
from configs import pretrain as pretrain_config  # the data section: which corpus to measure perplexity on


def get_config() -> ml_collections.ConfigDict:
    c = run_config()
    c.job = "evaluate"
    c.checkpoint = ""
    c.init_from_hf = ""          # or: a transformers GPT-2 folder (config.json, model.safetensors, tokenizer.json)
    c.data = pretrain_config.get_config("tiny").data  # the corpus whose validation split gives the perplexity
    c.teacher = interactive_config.get_config("default").teacher  # who grades the stories
    return c


def run_config() -> ml_collections.ConfigDict:
    """How a student is evaluated, without which student, its corpus and its grader: configs/experiment.py
    starts from this and sets those per student."""
    c = ml_collections.ConfigDict()
    c.blimp_dir = ""             # a directory of BLiMP-style .jsonl files (sentence_good / sentence_bad)
    c.perplexity = True          # validation perplexity on `data`
    c.max_val_blocks = 256
    c.seed = 1234
    # Story evaluation: `num_openings` openings of the set `openings` (heldout: our 52, written for storyjax;
    # corpus: 52 in the tales corpus's words, comma-ended as the training prompt; training: the training
    # prompt `prompt` itself, num_openings=1), less any in `exclude` (the prompts the student learned from),
    # `per_opening` stories each; every student evaluated with the same seed writes from the same sampling keys,
    # so two students' stories pair up (eval/stories.jsonl, one line per story, in order).
    c.stories = ml_collections.ConfigDict(dict(openings="heldout", num_openings=52, per_opening=4, batch=128,
                                               exclude=(), prompt=""))
    c.sampling = interactive_config.get_config("default").sampling
    c.sampling.max_new_tokens = 64
    c.progress_bar = True
    return c
