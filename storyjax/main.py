"""Entry point: `python -m storyjax.main --config=configs/FILE.py[:PRESET] --workdir=DIR [--config.KEY=V]`.

The config's `job` field says what runs. The same command, rerun, resumes. One run holds a workdir at a
time. A bad input, a diverged run or a dead teacher ends the run with one line on stderr (the traceback
with --traceback): exit code 2 for a refused input, 1 for a run that stopped, 143 after SIGTERM.
"""

from __future__ import annotations

import functools
import logging as std_logging
import os
import sys

import jax
import tensorflow_datasets as tfds
from absl import app, flags, logging
from ml_collections import config_flags

from storyjax import config_file, distributed, evaluate, experiment, grade, interactive, preemption, pretrain
from storyjax import host_memory, teacher_health, workdir_lock

config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/pretrain.py:tiny.", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and outputs (resumes if it holds a run).")
flags.DEFINE_bool("traceback", False, "Show the full traceback of an error instead of its one-line message.")
flags.mark_flags_as_required(["config", "workdir"])

# What each job prints when it ends (the whole record is WORKDIR/summary.json).
JOBS = {
    "pretrain": (pretrain, ("steps", "words", "loss_first", "loss_last", "val_loss", "param_checksum")),
    "interactive": (interactive, ("steps", "stories", "input_words", "unscorable", "heldout_score_start",
                                  "heldout_score_end", "judge_score_start", "judge_score_end", "param_checksum")),
    "grade": (grade, ("teacher", "stories", "unscorable", "sum", "stories_per_s", "pairs", "a_wins", "position",
                  "pairs_per_s")),
    "experiment": (experiment, ("judge", "teacher", "milestones", "seeds", "controls", "gates", "outputs")),
    "evaluate": (evaluate, ("blimp", "perplexity", "stories_sum")),  # the full story report: DIR/eval/stories.json
}
# Libraries whose INFO chatter (one line per file written) buries the run's own log.
_QUIET = ("/orbax/", "/tensorflow_datasets/", "/etils/", "/httpx/")


def _quiet_libraries(record) -> bool:
    return record.levelno >= std_logging.WARNING or not any(q in record.pathname for q in _QUIET)


def _unknown_overrides(argv) -> list[str]:
    """Names each `--config.KEY=` whose KEY the config file does not define, with the keys it does."""
    spec = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
    if spec is None:
        return []
    config = config_file.load(spec)
    problems = []
    for arg in argv:
        if not arg.startswith("--config."):
            continue
        node, keys = config, arg[len("--config."):].split("=", 1)[0].split(".")
        for depth, key in enumerate(keys):
            if not hasattr(node, "keys") or key not in node:
                where = ".".join(keys[:depth]) or "the top level"
                options = sorted(node.keys()) if hasattr(node, "keys") else []
                problems.append(f"--config.{'.'.join(keys)}: no key {key!r} at {where}; keys there: {options}")
                break
            node = node[key]
    return problems


def parse_flags(argv):
    """absl flag parsing, with unknown config keys named instead of a bare AttributeError."""
    try:
        return flags.FLAGS(argv)
    except (AttributeError, KeyError) as e:
        problems = _unknown_overrides(argv) or [repr(e)]
        sys.exit("Unknown config key:\n  " + "\n  ".join(problems))


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}; settings go in --config.KEY=VALUE.")
    _one_line_errors(host_memory.keep_for_reuse)  # before JAX starts its backends: see storyjax/host_memory.py
    logging.get_absl_handler().python_handler.addFilter(_quiet_libraries)
    tfds.disable_progress_bar()  # per-split bars; our own bar shows the training progress
    config = flags.FLAGS.config
    if config.job not in JOBS:
        raise app.UsageError(f"config.job={config.job!r} is unknown; this build runs {tuple(JOBS)}.")
    job, shown = JOBS[config.job]
    # Bad settings are refused before the workdir is touched; the job then runs from the records parsed here.
    settings, pretrain_settings = _one_line_errors(lambda: validate(config))
    run = job.run_settings
    if pretrain_settings is not None:
        # The quickstart: the interactive run pretrains its student first, with main's pretraining job.
        run = functools.partial(interactive.run_settings,
                                pretrain=functools.partial(pretrain.run_settings, pretrain_settings))
    distributed.initialize(config.get("distributed"))  # before any computation touches a device
    compilation_cache(flags.FLAGS.workdir)
    lock = workdir_lock.WorkdirLock(flags.FLAGS.workdir)
    if distributed.is_primary():
        _one_line_errors(lock.acquire)
        logging.vlog(1, "Config:\n%s", config)  # shown with -v 1
    try:
        summary = _one_line_errors(lambda: run(settings, flags.FLAGS.workdir))
    except preemption.Preempted as e:
        logging.warning("%s", e)
        sys.exit(143)
    finally:
        lock.release()
    distributed.barrier("job done")
    if distributed.is_primary():
        print({k: summary[k] for k in shown if k in summary})
        if hasattr(job, "closing_words"):
            print(job.closing_words(summary, os.path.abspath(flags.FLAGS.workdir)))


def compilation_cache(workdir: str) -> None:
    """On accelerators, XLA's compiled programs persist under WORKDIR/xla_cache: a resumed or repeated run
    (and every opening's teacher passes after the first run) loads them instead of compiling again, which for
    an 8B teacher and the paper's student takes minutes. Not on CPU, where compiling is quick and the cache
    would only fill the disk. A path XLA_FLAGS or JAX_COMPILATION_CACHE_DIR already set is kept."""
    if jax.default_backend() == "cpu" or jax.config.jax_compilation_cache_dir:
        return
    jax.config.update("jax_compilation_cache_dir", os.path.join(os.path.abspath(workdir), "xla_cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def validate(config) -> tuple:
    """Every setting the job will use, checked before any work: the job's own, and for an interactive run
    that pretrains its student first (the quickstart), the pretraining section too. Returns their parsed
    records: (the job's, the pretraining's or None)."""
    if config.job not in JOBS:
        raise ValueError(f"config.job={config.job!r} is unknown; this build runs {tuple(JOBS)}.")
    job = JOBS[config.job][0]
    settings = job.parse(config)
    if job is interactive and interactive.needs_pretraining(config):
        return settings, pretrain.parse(config.pretrain)
    return settings, None


def _one_line_errors(fn):
    """Runs `fn`; a refused input (ValueError: exit 2) or a run that had to stop (a diverged loss, a dead
    teacher: exit 1) is one line on stderr, its traceback only with --traceback."""
    try:
        return fn()
    except (ValueError, FloatingPointError, teacher_health.TeacherUnhealthy) as e:
        if flags.FLAGS.traceback:
            raise
        kind = "refused" if isinstance(e, ValueError) else "stopped"
        print(f"storyjax: {kind}: {' '.join(str(e).split())}", file=sys.stderr, flush=True)
        sys.exit(2 if isinstance(e, ValueError) else 1)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
