"""Every job refuses every bad setting before any work: each setting of each job's config gets a bogus
value, and validation (what `python -m storyjax.main` runs before it touches the workdir) must refuse it
within a second, in one line naming the setting. A setting added without a check fails here."""

import json
import math
import time

import ml_collections
import pytest

from storyjax import checkpoint, config_file, main
from storyjax.setting_checks import count, finite, share

CONFIGS = {"pretrain": "configs/pretrain.py:tiny", "interactive": "configs/interactive.py",
           "grade": "configs/grade.py", "evaluate": "configs/evaluate.py", "experiment": "configs/experiment.py:cpu"}
# Settings any value of which is legitimate, or which the job does not read as configured; why, for each:
FREE_NAMES = {
    "preset": "a label of the preset that built the config",
    "prompt": "the opening: any text",
    "model": "a served model's name: any string the server knows",
    "api_key_env": "the name of an environment variable",
    "tfds_dir": "where tfds caches corpora: any path, created on first use",
}
# Read only by a teacher kind the config does not choose (the rubric teaches and judges in these configs),
# or the label of a nested job's section:
UNREAD = ("teacher.jax.weights", "teacher.replay.answers", "judge.replay.answers", "pretrain.job")


def leaves(config: ml_collections.ConfigDict, prefix: str = ""):
    for key, value in config.items():
        if isinstance(value, ml_collections.ConfigDict):
            yield from leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def bogus(value):
    """A value no setting of this type can take, or None for switches and lists (checked elsewhere)."""
    if isinstance(value, bool) or isinstance(value, (tuple, list)):
        return None
    return {str: "bogus", int: -7, float: float("nan")}.get(type(value))


def set_key(config, key: str, value) -> None:
    *path, name = key.split(".")
    for part in path:
        config = config[part]
    config[name] = value


def valid_config(job: str, tmp_path) -> ml_collections.ConfigDict:
    """The job's config with what it needs to run given: the grading job a stories file, the evaluation a
    run's folder."""
    config = config_file.load(CONFIGS[job])
    if job == "grade":
        config.stories = str(tmp_path / "stories.jsonl")
        story = {"prompt": "Once upon a time", "story": "Once upon a time a fox ran."}
        (tmp_path / "stories.jsonl").write_text(json.dumps(story) + "\n")
    if job == "evaluate":  # validation reads the run's meta file, not its checkpoint
        (tmp_path / checkpoint.META_FILE).write_text("{}")
        config.checkpoint = str(tmp_path)
    return config


@pytest.mark.parametrize("job", sorted(CONFIGS))
def test_every_setting_of_every_job_is_refused_by_validation_naming_it(job, tmp_path):
    main.validate(valid_config(job, tmp_path))  # as configured, it passes
    walked, accepted = 0, []
    for key, value in leaves(valid_config(job, tmp_path)):
        wrong = bogus(value)
        name = key.rpartition(".")[2]
        if wrong is None or name in FREE_NAMES or key.endswith(UNREAD):
            continue
        if key == "judge.jax.weights" and config_file.load(CONFIGS[job]).judge.name not in ("auto", "jax"):
            continue  # a judge of another kind (the experiment's tales grammar) reads no weights
        config = valid_config(job, tmp_path)
        set_key(config, key, wrong)
        walked += 1
        start = time.time()
        try:
            main.validate(config)
        except ValueError as refused:
            message = str(refused)
            assert name in message and "\n" not in message and time.time() - start < 1.0, (key, message)
            continue
        accepted.append(key)
    assert not accepted, f"{job}: these bogus settings were accepted: {accepted}"
    assert walked >= {"pretrain": 40, "interactive": 90, "grade": 20, "evaluate": 30, "experiment": 120}[job], walked


def test_a_number_setting_is_a_finite_int_or_float_never_a_bool_string_or_nan():
    assert finite(0) and finite(-2.5) and share(0.0) and share(0.99) and share(5, top=math.inf)
    for bad in (True, False, "0.1", None, float("nan"), float("inf"), [0.1]):
        assert not finite(bad) and not share(bad), bad
    assert not share(1.0) and not share(-0.1)
    assert count(0) and count(3, least=1) and not count(0, least=1) and not count(True) and not count(1.0)
