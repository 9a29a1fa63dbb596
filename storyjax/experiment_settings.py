"""The experiment's settings (configs/experiment.py), parsed once into frozen records at the job's entry.

Its `interactive` and `evaluate` sections become the records every run and every evaluation starts from;
`storyjax.experiment` composes each run (its milestone, seed, control, teacher) and each student's evaluation
(its checkpoint, grader, openings) from them with `dataclasses.replace`, so no config key is deleted or
recreated and what a run reads is what its record holds.
"""

from __future__ import annotations

import dataclasses

from storyjax import settings_record
from storyjax.evaluate_settings import EvaluateSettings
from storyjax.interactive_settings import InteractiveSettings
from storyjax.pretrain_settings import PretrainSettings
from storyjax.teachers.grader_settings import GraderSettings
from storyjax.teachers.settings import parse as parse_grader


@dataclasses.dataclass(frozen=True)
class ReferenceLM:
    weights: str = ""               # any model the jax teacher loads (.gguf or a Hugging Face folder)
    cap: int = 64                   # tokens of a pair's stories compared (both have them)
    batch_size: int = 16


@dataclasses.dataclass(frozen=True)
class Monitor:
    max_distinct2_drop: float = 0.2
    max_repeat_rise: float = 0.1
    max_skeleton_rise: float = 0.2
    max_length_drop: float = 0.5
    max_empty_rise: float = 0.1


@dataclasses.dataclass(frozen=True)
class ExperimentPlan:
    """The `experiment` section (configs/experiment.py says what each setting does)."""
    milestones: tuple
    seeds: tuple
    controls: tuple = ()
    control_milestone: str = ""
    bootstrap: int = 2000
    gate0: bool = True
    positive_teacher: str = "tales"
    probes: tuple = ()
    instruments: tuple = ("judge",)
    reference_lm: ReferenceLM = ReferenceLM()
    positive_seeds: tuple = ()
    gate0_stories: int = 64
    teacher_view: bool = False
    kl_band: float = 0.5
    monitor: Monitor = Monitor()


@dataclasses.dataclass(frozen=True)
class ExperimentSettings:
    pretrain: PretrainSettings
    interactive: InteractiveSettings   # every run's settings before its own (milestone, seed, control)
    experiment: ExperimentPlan
    evaluate: EvaluateSettings         # every evaluation's before its own (student, grader)
    judge: GraderSettings
    preset: str = ""
    ledger_only: bool = False
    progress_bar: bool = False
    init_checkpoint: str = ""

    @classmethod
    def from_config(cls, config) -> "ExperimentSettings":
        """The record of an experiment config: the interactive runs' judge is the experiment's, the runs never
        pretrain, and a dry run's graders need no weights yet (not yet checked: `experiment.parse` checks)."""
        values = {k: v for k, v in settings_record.as_dict(config).items() if k != "job"}
        dry = bool(values.get("ledger_only", False))
        judge = parse_grader(values.pop("judge"), "judge", weights=False)  # files: checked with each run
        interactive = InteractiveSettings.from_config(
            values.pop("interactive"), judge=judge, auto_pretrain=False, ledger_only=dry,
            progress_bar=bool(values.get("progress_bar", False)))
        evaluate = EvaluateSettings.from_config(values.pop("evaluate"))
        pretrain = PretrainSettings.from_config(values.pop("pretrain"))
        return settings_record.parse(cls, {**values, "pretrain": pretrain, "interactive": interactive,
                                           "evaluate": evaluate, "judge": judge}, "")
