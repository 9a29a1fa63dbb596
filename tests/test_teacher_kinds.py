"""The registry of teacher kinds: a new kind is one record (its file) and one registry line, and the
factory, the settings check, the judge and the experiment's dry run all follow it. Shown with a toy kind
that gives every story the same grades."""

import dataclasses

import numpy as np
import pytest

from configs import experiment as experiment_config
from configs import interactive as interactive_config
from storyjax import experiment
from storyjax import judge as J
from storyjax.grades import Grades
from storyjax.teachers import kinds, make_teacher
from storyjax.teachers.settings import parse
from storyjax.teachers import config as teacher_config
from storyjax.teachers.base import Teacher
from storyjax.teachers.kinds.kind import Kind


def graders(c):
    """(judge, teacher) as a run parses them."""
    return parse(c.judge, "judge", weights=False), parse(c.teacher, "teacher", weights=False)


class ConstantTeacher(Teacher):
    name = "constant"

    def __init__(self, cfg):
        self.level = float(cfg.constant.level)

    def grade_batch(self, prompts, stories):
        return Grades(np.full((len(stories), 3), self.level, np.float32), [f"{self.level:g}"] * len(stories))


# The toy kind's whole definition: what a new kind's file holds.
@dataclasses.dataclass(frozen=True)
class ConstantSettings:
    level: int = 2
    model: str = "const-v1"


CONSTANT = Kind(
    name="constant", build=lambda cfg, log_path: ConstantTeacher(cfg), section="constant",
    settings=ConstantSettings, reads=("constant",),
    rules=(("constant", "level", lambda x: x in (0, 1, 2, 3), "use a grade 0-3"),),
    grades_alike=("level",), identity=lambda cfg: {f"constant model {cfg.constant.model}"},
    model=lambda cfg: cfg.constant.model, needs=lambda cfg, key: f"nothing but {key}.constant.level",
    fix_dead=lambda cfg, key: f"{key}.constant.level")


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(kinds.KINDS, "constant", CONSTANT)  # the registry line


def test_a_new_kind_is_built_checked_and_configured_from_its_record(registered):
    section = teacher_config.defaults("constant")
    assert section.constant.to_dict() == {"level": 2, "model": "const-v1"}
    teacher = make_teacher(teacher_config.configured("constant", level=3))
    assert (teacher.grade_batch(["p"] * 2, ["a", "b"]).scores_Bx3 == 3).all()
    parse(section, "teacher")
    section.constant.level = 5
    with pytest.raises(ValueError, match=r"teacher.constant.level=5: use a grade 0-3"):
        parse(section, "teacher")
    assert "constant" not in kinds.pairwise() and kinds.get("constant").fix_dead(section, "teacher") == \
        "teacher.constant.level"


def test_the_judge_and_the_dry_run_read_a_new_kind_from_its_record(registered):
    c = interactive_config.get_config("default")
    teacher_config.update(c.teacher, name="constant")
    teacher_config.update(c.judge, name="constant")
    assert J.is_teacher(*graders(c)) and J.same_model(*graders(c)) == "both are constant model const-v1"
    assert J.describe(*graders(c)).startswith("constant (const-v1) — judge = teacher")
    c.judge.constant.level = 1  # grades otherwise, but the same model: still the teacher's, refused
    assert not J.is_teacher(*graders(c))
    with pytest.raises(ValueError, match="the judge is the training teacher"):
        J.check(*graders(c))
    c.judge.constant.model = "const-v2"
    J.check(*graders(c))
    x = experiment_config.get_config("tiny")
    teacher_config.update(x.interactive.teacher, name="constant")
    teacher = parse(x.interactive.teacher, "interactive.teacher", weights=False)
    assert experiment._model_needs(teacher, "interactive.teacher") == \
        "nothing but interactive.teacher.constant.level"


def test_an_unknown_kind_is_refused_naming_the_registered_ones():
    with pytest.raises(ValueError, match=r"teacher.name='oracle' is unknown; choose one of \('rubric'"):
        parse(teacher_config.defaults("oracle"))


def test_a_kinds_own_checks_run_whichever_kind_is_chosen(tmp_path):
    """The jax kind's pairwise template is a file: a missing one is refused before any work, naming the
    setting, even while the section's chosen kind is another."""
    judge = teacher_config.judge_defaults()
    judge.jax.pairwise_template = str(tmp_path / "missing.txt")
    with pytest.raises(ValueError, match="judge.jax.pairwise_template"):
        parse(judge, "judge")
