"""The teacher's settings and their defaults, defined here once; a judge has the same shape.

`teacher.name` chooses the kind; each kind's own settings live in its sub-section, the few every LLM
teacher shares at the top:

  teacher.name                  rubric | tales | openai | jax | replay
  teacher.template              the rubric prompt ("" = storyjax/teachers/templates/rubric_prompt.txt)
  teacher.temperature, .seed    how an LLM teacher's answer is sampled (0.2: the paper's teacher); seed -1
                                sends none to a server
  teacher.shard_across_hosts    several processes: False = process 0 grades every story; True = each grades
                                its share of each batch (point base_url at a server per host)
  teacher.max_failed_batches, .max_unscorable_rate, .health_window
                                teacher health: checkpoint and stop after that many batches in a row with
                                nothing graded, or when more than that share of the last window's stories
                                were unscorable
  teacher.openai.*              an OpenAI-compatible server (vLLM, llama.cpp, Ollama)
  teacher.jax.*                 an instruct LLM inside the program: a Hugging Face folder or a .gguf file
  teacher.replay.answers        a run's answers.jsonl, replayed (parsed as the openai teacher parses)
The rubric and the tales grammar have no settings: they are the offline graders in
storyjax/teachers/rubric.py and storyjax/teachers/tales_grammar.py. Each kind's own section, its defaults
and its rules live in its file under storyjax/teachers/kinds/.

A teacher reads its settings under the names the command line gives them (`cfg.jax.weights`).
A job parses its sections into records (`storyjax.teachers.settings.parse`) before it uses them.
"""

from __future__ import annotations

import dataclasses

import ml_collections

from storyjax.teachers import kinds
from storyjax.teachers.grader_settings import SHARED, GraderSettings


def sections() -> tuple:
    """The kinds' own sub-sections (the rubric and the tales grammar have none)."""
    return tuple(k.section for k in kinds.KINDS.values() if k.section)


def defaults(name: str = "rubric") -> ml_collections.ConfigDict:
    """The teacher section with every default: the shared settings, then each kind's own section."""
    shared = {k: v for k, v in dataclasses.asdict(GraderSettings()).items() if k in SHARED}  # no judge-only ones
    return ml_collections.ConfigDict(dict(shared, name=name, **{k.section: k.defaults for k in kinds.KINDS.values()
                                                                if k.section}))


def judge_defaults() -> ml_collections.ConfigDict:
    """The judge: the teacher's shape, name "auto" (the jax teacher when judge.jax.weights is given, else
    the rubric), greedy grades, and its own two settings: `allow_same` (run even when it is the training
    teacher's model, reported as judge = teacher) and `mode` (absolute | pairwise)."""
    judge = defaults("auto")
    judge.jax.grading = "greedy"
    judge.allow_same = GraderSettings.allow_same
    judge.mode = GraderSettings.mode
    return judge


def update(cfg: ml_collections.ConfigDict, **settings) -> ml_collections.ConfigDict:
    """Sets each of `settings` where it lives in a teacher or judge section (`weights=` is jax.weights,
    `base_url=` openai.base_url, `allow_same=` the judge's own); returns `cfg`."""
    for key, value in settings.items():
        homes = [section for section in sections() if section in cfg and key in cfg[section]]
        if key in cfg and key not in sections():
            cfg[key] = value
        elif homes:
            cfg[homes[0]][key] = value
        else:
            raise KeyError(f"{key!r} is not a teacher setting (see storyjax/teachers/config.py).")
    return cfg


def configured(name: str, **settings) -> GraderSettings:
    """The record of `defaults(name)` with `settings` set where each lives: for code and tests that build a
    teacher without a config file (the teacher checks its settings when it is built)."""
    return kinds.record(update(defaults(name), **settings))
