"""Evaluation config: `--config=configs/evaluate.py --config.checkpoint=PATH --workdir=DIR`.

PATH is a pretraining or interactive run's workdir (its latest checkpoint) or one milestone inside it
(`RUN/milestones/chck_400K`). On an Austen-pretrained tiny student:
  python -m storyjax.main --config=configs/evaluate.py --config.checkpoint=runs/austen \
      --config.blimp_dir=../shared/data/blimp --config.data.name=text_files \
      --config.data.path=../shared/data/corpora/austen --workdir=runs/austen_eval
writes eval/blimp.json (accuracy per paradigm file and overall) and eval/perplexity.json.
"""

import os
import sys

import ml_collections

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pretrain as pretrain_config  # noqa: E402  (the data section: which corpus to measure perplexity on)


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.job = "evaluate"
    c.checkpoint = ""
    c.blimp_dir = ""             # a directory of BLiMP-style .jsonl files (sentence_good / sentence_bad)
    c.perplexity = True          # validation perplexity on `data`
    c.max_val_blocks = 256
    c.data = pretrain_config.get_config("tiny").data
    c.progress_bar = True
    return c
