"""Evaluation of a student checkpoint: BLiMP minimal pairs, validation perplexity, held-out stories.

`python -m storyjax.main --config=configs/evaluate.py --config.checkpoint=PATH --workdir=DIR` where PATH is
a pretraining or interactive workdir (its latest checkpoint) or a milestone inside one
(`.../milestones/chck_2M`). Writes DIR/eval/{blimp,perplexity,stories}.json and DIR/summary.json.
"""

from __future__ import annotations

import json
import math
import os
import tempfile

import jax
import numpy as np
from absl import logging

from storyjax import blimp, heldout, likelihood, run_outputs, sampler, settings_record
from storyjax import student as student_lib
from storyjax import checkpoint as ckpt_lib
from storyjax import data as data_lib
from storyjax.data import load_corpus, packing
from storyjax.prompts import story_openings
from storyjax.evaluate_settings import EvaluateSettings
from storyjax.teachers.settings import parse as parse_grader


def perplexity(cfg, params, tok, data_cfg: data_lib.DataSettings, max_blocks: int) -> dict:
    """Validation perplexity per token and per whitespace word on the configured corpus."""
    source = load_corpus(data_cfg)["validation"]
    with tempfile.TemporaryDirectory() as cache:
        stream = packing.tokenize_split(source, tok, cache, "validation")
        L = cfg.max_len
        n = min(packing.num_blocks(stream, L), max_blocks)
        if n == 0:
            raise ValueError(f"the validation split has fewer than {L} tokens.")
        blocks = np.asarray(stream.tokens[:n * L]).reshape(n, L)
        nll = -score_blocks(cfg, params, blocks)
        tokens_scored = n * (L - 1)
        words = tokens_scored / stream.tokens_per_word
    return {"tokens": tokens_scored, "nll_per_token": nll / tokens_scored,
            "ppl_per_token": math.exp(nll / tokens_scored), "ppl_per_word": math.exp(nll / words),
            "words": words, "blocks": n}


def score_blocks(cfg, params, blocks: np.ndarray) -> float:
    """Σ log p over packed validation blocks (each block's first token given), 16 blocks a batch."""
    return float(likelihood.sequence_scores(cfg, params, list(blocks), batch=16).sum())


def parse(config, weights: bool = True, student: bool = True, **per_student) -> EvaluateSettings:
    """The evaluation's settings as a checked record; refuses, before any work, settings no evaluation can use
    (`weights=False`: a dry run, an LLM teacher's weights need not be there yet; `student=False`: the student is
    written later, as in an experiment)."""
    s = EvaluateSettings.from_config(config, **per_student)
    if bool(s.checkpoint) == bool(s.init_from_hf):
        raise ValueError("give one student to evaluate: --config.checkpoint=RUN_WORKDIR (or "
                         "RUN_WORKDIR/milestones/chck_N), or --config.init_from_hf=HF_MODEL_DIR.")
    if student and s.checkpoint:
        ckpt_lib.check_student_path(s.checkpoint)
    if student and s.init_from_hf and not os.path.isfile(os.path.join(s.init_from_hf, "config.json")):
        raise ValueError(f"init_from_hf={s.init_from_hf!r} has no config.json; point it at a transformers model "
                         "folder.")
    if s.seed < 0:
        raise ValueError(f"seed={s.seed}: use a seed >= 0.")
    if s.stories.num_openings < 0:
        raise ValueError(f"stories.num_openings={s.stories.num_openings}: use 0 (no stories) or more.")
    if s.stories.num_openings:
        story_openings(s.stories.openings, s.stories.num_openings, s.stories.exclude, s.stories.prompt)
        if s.stories.per_opening < 1 or s.stories.batch < 1:
            raise ValueError(f"stories.per_opening={s.stories.per_opening} and stories.batch={s.stories.batch}: use "
                             "1 or more of each.")
        settings_record.problems([(False, why) for why in sampler.setting_problems(s.sampling)])
        parse_grader(s.teacher, "teacher", weights=weights)
    if s.perplexity:
        if s.max_val_blocks < 1:
            raise ValueError(f"max_val_blocks={s.max_val_blocks}: measure perplexity on 1 block or more.")
        data_lib.check(s.data)
    blimp.check_dir(s.blimp_dir, "blimp_dir")
    return s


def run(config, workdir: str) -> dict:
    """The job's entry (configs/evaluate.py): its settings parsed, then `run_settings`."""
    return run_settings(parse(config), workdir)


def run_settings(config: EvaluateSettings, workdir: str) -> dict:
    """One student's evaluation from its parsed settings (the job, or one student of an experiment)."""
    out_dir = os.path.join(os.path.abspath(workdir), "eval")
    os.makedirs(out_dir, exist_ok=True)
    loaded = student_lib.load(config.checkpoint, config.init_from_hf)
    cfg, params, tok = loaded.model_cfg, loaded.params, loaded.tok
    summary = {"job": "evaluate", **({"init_from_hf": loaded.source} if config.init_from_hf else
                                     {"checkpoint": os.path.abspath(config.checkpoint)})}
    if config.blimp_dir:
        summary["blimp"] = blimp.accuracy(cfg, params, tok, config.blimp_dir)
        run_outputs.write_json(os.path.join(out_dir, "blimp.json"), summary["blimp"])
        logging.info("BLiMP overall accuracy %.3f", summary["blimp"]["overall"])
    if config.stories.num_openings:
        summary["stories"] = heldout.report(config, cfg, params, tok, workdir)
        records = summary["stories"].pop("records")
        run_outputs.write_text(os.path.join(out_dir, "stories.jsonl"), "".join(json.dumps(r) + "\n" for r in records))
        run_outputs.write_json(os.path.join(out_dir, "stories.json"), summary["stories"])
        summary["stories_sum"] = summary["stories"]["sum"]
        logging.info("Held-out stories: teacher sum %.2f ± %.2f of 9", summary["stories"]["sum"]["mean"],
                     summary["stories"]["sum"]["ci95"])
    if config.perplexity:
        summary["perplexity"] = perplexity(cfg, params, tok, config.data, config.max_val_blocks)
        run_outputs.write_json(os.path.join(out_dir, "perplexity.json"), summary["perplexity"])
    summary["param_checksum"] = run_outputs.param_checksum(jax.device_get(params))
    run_outputs.write_summary(workdir, summary)
    return summary


def closing_words(summary: dict, workdir: str) -> str:
    """What the evaluation measured, in words, and where its outputs are."""
    found = []
    if "blimp" in summary:
        found.append(f"BLiMP accuracy {summary['blimp']['overall']:.3f}")
    if "perplexity" in summary:
        found.append(f"validation perplexity {summary['perplexity']['ppl_per_word']:.1f} per word")
    if "stories_sum" in summary:
        total = summary["stories_sum"]
        found.append(f"held-out stories graded {total['mean']:.2f} ± {total['ci95']:.2f} of 9 by the teacher")
    student = summary.get("checkpoint") or summary.get("init_from_hf")
    return (f"Evaluated {student}: {'; '.join(found) or 'nothing was asked for'}.\n"
            f"Outputs in {workdir}/eval: blimp.json, perplexity.json, stories.json and stories.jsonl (each "
            "held-out story with its grades), as asked; summary.json in the workdir.")
