"""Judge identity: a judge that is the training teacher's model is refused unless allowed, and then labelled."""

import shutil

import pytest

from configs import interactive as interactive_config
from storyjax import judge as J
from storyjax.teachers import config as teacher_config
from storyjax.teachers.settings import parse


def graders(c):
    """(judge, teacher) as a run parses them (weights files are not read here)."""
    return parse(c.judge, "judge", weights=False), parse(c.teacher, "teacher", weights=False)


def config(**judge):
    c = interactive_config.get_config("paper")
    teacher_config.update(c.judge, **judge)
    return c


def test_the_papers_8b_teacher_cannot_also_be_its_judge_however_it_is_reached(tmp_path):
    # The paper preset's teacher is served (openai, meta-llama/Llama-3.1-8B-Instruct); the judge in process.
    folder = tmp_path / "Llama-3.1-8B-Instruct"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "llama"}')
    c = config(name="jax", weights=str(folder) + "/")
    assert J.same_model(*graders(c)) == "both are model llama-3.1-8b-instruct"
    with pytest.raises(ValueError, match=r"the judge is the training teacher \(both are model llama-3.1-8b-instruct\)"):
        J.check(*graders(c))
    c.judge.allow_same = True
    J.check(*graders(c))
    assert "judge = teacher" in J.describe(*graders(c))
    c = config(name="jax", weights=str(tmp_path / "Qwen2.5-7B-Instruct"))
    assert J.same_model(*graders(c)) == "" and "judge = teacher" not in J.describe(*graders(c))
    J.check(*graders(c))


def test_the_same_weights_file_under_another_name_is_the_same_model(tmp_path):
    a, b, other = tmp_path / "teacher.gguf", tmp_path / "copy-of-it.gguf", tmp_path / "other.gguf"
    a.write_bytes(b"GGUF" + bytes(range(256)) * 40_000)
    shutil.copy(a, b)
    other.write_bytes(b"GGUF" + bytes(range(255, -1, -1)) * 40_000)
    c = interactive_config.get_config("default")
    teacher_config.update(c.teacher, name="jax", weights=str(a), grading="sample")
    teacher_config.update(c.judge, name="jax", weights=str(b), grading="expected", allow_same=False)
    assert J.same_model(*graders(c)).startswith("both are weights ")
    with pytest.raises(ValueError, match="set --config.judge.allow_same=True"):
        J.check(*graders(c))
    c.judge.jax.weights = str(other)
    assert J.same_model(*graders(c)) == ""


def test_the_same_server_and_model_is_the_same_judge_and_the_quickstart_says_so():
    c = config(name="openai")  # everything else copied from the teacher
    assert J.same_model(*graders(c)).startswith("both are ")
    quick = interactive_config.get_config("default")  # rubric teaches and judges: allowed, and labelled
    assert J.same_model(*graders(quick)) == "both are the offline rubric" and not quick.judge.allow_same
    J.check(*graders(quick))  # left at auto with no weights: the only grader offline
    assert J.describe(*graders(quick)).startswith("rubric — judge = teacher")
    quick.judge.name = "rubric"  # chosen by name: the user asked for the teacher as judge
    with pytest.raises(ValueError, match="the judge is the training teacher"):
        J.check(*graders(quick))


def test_a_judge_given_the_teachers_own_file_is_refused_at_the_default_settings(tmp_path):
    """As a new user would try it: judge and teacher both one GGUF file, the teacher greedy, allow_same left
    at its default. The judge was chosen (its weights given), so it is refused before any work."""
    weights = tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf"
    weights.write_bytes(b"GGUF" + bytes(range(256)) * 1000)
    c = interactive_config.get_config("default")
    teacher_config.update(c.teacher, name="jax", weights=str(weights), grading="greedy")
    teacher_config.update(c.judge, weights=str(weights))  # name left at auto
    with pytest.raises(ValueError, match="the judge is the training teacher"):
        J.check(*graders(c))
