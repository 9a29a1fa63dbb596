"""How likely a student is to end its story before writing anything: the probability of end-of-text as the
first token after an opening, per kind of opening.

A student of the tales corpus learns where a tale ends; a finished sentence it cannot place in a tale then
reads as a story already told. This probe shows which openings a student treats so (our held-out openings,
whole sentences from outside its world) and which it continues (the training prompt, openings in the
corpus's words ending in a comma, a tale's own first sentence).

    python -m storyjax.end_of_text --run=PRETRAIN_RUN --milestones=chck_100K,chck_1M
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from storyjax import model as model_lib
from storyjax import student as student_lib
from storyjax.data.tales_generator import make_tale
from storyjax.prompts import CORPUS_OPENINGS, HELDOUT_OPENINGS, PAPER_PROMPT
from storyjax.teachers.rubric import sentences

HELD_OUT_TALES = 4242  # a seed no pretraining run draws


def opening_kinds(n: int = 52) -> dict[str, list[str]]:
    """Kinds of opening, `n` of each (the training prompt alone)."""
    tales = [" ".join(make_tale(HELD_OUT_TALES, i).split()) for i in range(n)]
    comma = lambda o: o[:-1] + "," if o.endswith(".") else o
    return {"held-out openings (ending '.')": list(HELDOUT_OPENINGS[:n]),
            "held-out openings, '.' made ','": [comma(o) for o in HELDOUT_OPENINGS[:n]],
            "corpus openings (ending ',')": list(CORPUS_OPENINGS[:n]),
            "corpus openings, ',' made '.'": [o[:-1] + "." for o in CORPUS_OPENINGS[:n]],
            "a tale's first sentence": [sentences(t)[0] for t in tales],
            "a tale's first two sentences": [" ".join(sentences(t)[:2]) for t in tales],
            "the end of a whole tale": tales,
            "the training prompt": [PAPER_PROMPT]}


def end_first(student: student_lib.Student, openings: list[str]) -> float:
    """Mean probability of end-of-text as the first token after each opening (its last tokens that fit the
    student's context). The openings run as one right-padded batch: causal attention leaves each opening's
    last position untouched by the padding after it."""
    ids = [row[-(student.model_cfg.max_len - 1):] for row in student.tok.encode(openings)]
    tokens = np.full((len(ids), student.model_cfg.max_len - 1), student.tok.pad_id, np.int32)
    for b, row in enumerate(ids):
        tokens[b, :len(row)] = row
    logits = model_lib.forward(student.model_cfg, student.params, jnp.asarray(tokens))
    last = logits[jnp.arange(len(ids)), jnp.asarray([len(row) - 1 for row in ids])]
    return float(jax.nn.softmax(last, -1)[:, student.tok.eos_id].mean())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="a pretraining or interactive run directory")
    parser.add_argument("--milestones", default="", help="comma-separated milestones (default: the latest)")
    args = parser.parse_args(argv)
    kinds = opening_kinds()
    for milestone in args.milestones.split(",") if args.milestones else [""]:
        student = student_lib.from_run(args.run, milestone)
        print(f"{milestone or 'latest'}: " + "; ".join(f"{k} {end_first(student, o):.3f}" for k, o in kinds.items()))


if __name__ == "__main__":
    main()
