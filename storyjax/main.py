"""Entry point: `python -m storyjax.main --config=configs/FILE.py[:PRESET] --workdir=DIR [--config.KEY=V]`.

The config's `job` field says what runs. The same command, rerun, resumes.
"""

from __future__ import annotations

import sys

from absl import app, flags, logging
from ml_collections import config_flags

config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/pretrain.py:tiny.", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and outputs (resumes if it holds a run).")
flags.mark_flags_as_required(["config", "workdir"])

JOBS = ("pretrain",)
# Libraries whose INFO chatter (one line per file written) buries the run's own log.
_QUIET = ("/orbax/", "/tensorflow_datasets/", "/etils/")


def _quiet_libraries(record) -> bool:
    return record.levelno >= logging.WARNING or not any(q in record.pathname for q in _QUIET)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}; settings go in --config.KEY=VALUE.")
    logging.get_absl_handler().addFilter(_quiet_libraries)
    config = flags.FLAGS.config
    if config.job not in JOBS:
        raise app.UsageError(f"config.job={config.job!r} is unknown; this build runs {JOBS}.")
    logging.info("Config:\n%s", config)
    if config.job == "pretrain":
        from storyjax import pretrain
        try:
            summary = pretrain.run(config, flags.FLAGS.workdir)
        except pretrain.Preempted as e:
            logging.warning("%s", e)
            sys.exit(143)
    print({k: summary[k] for k in ("steps", "words", "loss_first", "loss_last", "val_loss", "param_checksum")})


if __name__ == "__main__":
    app.run(main)
