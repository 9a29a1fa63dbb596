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
storyjax/teachers/rubric.py and storyjax/teachers/tales_grammar.py.

`flat(cfg)` is what a teacher of the chosen kind reads: the shared settings and its own section's, merged.
"""

from __future__ import annotations

import ml_collections

SHARED = ("name", "template", "temperature", "seed", "shard_across_hosts", "max_failed_batches",
          "max_unscorable_rate", "health_window")
KINDS = ("openai", "jax", "replay")  # the sections; the rubric and the tales grammar have none
# a replayed log is parsed as the server's answers were, so it reads the openai section too
READS = {"rubric": (), "tales": (), "openai": ("openai",), "jax": ("jax",), "replay": ("openai", "replay")}


def defaults(name: str = "rubric") -> ml_collections.ConfigDict:
    """The teacher section with every default."""
    return ml_collections.ConfigDict(dict(
        name=name, template="", temperature=0.2, seed=0, shard_across_hosts=False,
        max_failed_batches=3, max_unscorable_rate=0.9, health_window=10,
        openai=dict(
            base_url="http://127.0.0.1:8000/v1", model="meta-llama/Llama-3.1-8B-Instruct",
            api_key_env="OPENAI_API_KEY",  # the key is read from this variable, never logged
            max_tokens=6,                  # the paper's teacher answers three digits
            constrain="none",              # none | vllm | vllm_legacy | llama_cpp: the server's grammar for them
            concurrency=16, timeout_s=60.0, retries=3, backoff_s=1.0),
        jax=dict(
            weights="",                    # a Hugging Face folder or a .gguf file
            # Grades are read off its logits: sample (a digit drawn at `temperature`: the paper's teacher) |
            # greedy | expected (the mean of its distribution over 0-3: the teacher's output distribution as
            # the reward, which BabyLM's rules forbid; a training teacher refuses it unless
            # allow_distribution_reward=True, and the run's summary then says so; a judge may use it).
            grading="sample", allow_distribution_reward=False,
            min_digit_mass=0.1,            # less of its probability on the digits 0-3 at any grade: unscorable
            batch_size=32,                 # stories per teacher pass; 0: as many of an opening's as the device's
                                           # memory plan allows (accelerators; 32 on CPU)
            memory_gb=0.0,                 # the device memory that plan may fill (0: what the device reports)
            compute_dtype="",              # "" = float32 on CPU, bfloat16 elsewhere
            devices=0,                     # local devices the stories are split over (0: all accelerators, or one CPU)
            model_parallel=1,              # devices each weight matrix is split over (a teacher larger than one)
            cpu_kernels="auto",            # auto | xla | ynnpack: the matmul kernels on CPU (teachers/lm_passes.py)
            pairwise_template=""),         # for pairs: "" = templates/pairwise_prompt.txt
        replay=dict(answers=""),
    ))


def judge_defaults() -> ml_collections.ConfigDict:
    """The judge: the teacher's shape, name "auto" (the jax teacher when judge.jax.weights is given, else
    the rubric), greedy grades, and its own two settings: `allow_same` (run even when it is the training
    teacher's model, reported as judge = teacher) and `mode` (absolute | pairwise)."""
    judge = defaults("auto")
    judge.jax.grading = "greedy"
    judge.allow_same = False
    judge.mode = "absolute"
    return judge


def kind(cfg: ml_collections.ConfigDict) -> str:
    """The kind a section names; a judge's "auto" is the in-process jax teacher when it has weights, else
    the rubric."""
    if cfg.name == "auto":
        return "jax" if cfg.jax.weights else "rubric"
    return cfg.name


def flat(cfg: ml_collections.ConfigDict, name: str | None = None) -> ml_collections.ConfigDict:
    """The settings a teacher of kind `name` (default: `cfg.name`) reads: the shared ones and its sections'."""
    name = name or cfg.name
    merged = {k: cfg[k] for k in SHARED if k in cfg}
    for section in READS.get(name, ()):
        merged.update(cfg[section].to_dict() if section in cfg else {})
    merged["name"] = name
    return ml_collections.ConfigDict(merged)


def update(cfg: ml_collections.ConfigDict, **settings) -> ml_collections.ConfigDict:
    """Sets each of `settings` where it lives in a teacher or judge section (`weights=` is jax.weights,
    `base_url=` openai.base_url, `allow_same=` the judge's own); returns `cfg`."""
    for key, value in settings.items():
        homes = [section for section in KINDS if key in cfg[section]]
        if key in cfg and key not in KINDS:
            cfg[key] = value
        elif homes:
            cfg[homes[0]][key] = value
        else:
            raise KeyError(f"{key!r} is not a teacher setting (see storyjax/teachers/config.py).")
    return cfg


def configured(name: str, **settings) -> ml_collections.ConfigDict:
    """`defaults(name)` with `settings` set where each lives: for code and tests that build a teacher
    without a config file."""
    return update(defaults(name), **settings)
