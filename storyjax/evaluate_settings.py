"""An evaluation's settings (configs/evaluate.py), parsed once into frozen records at the job's entry; the
experiment composes one per student with `dataclasses.replace` (its checkpoint, its grader, its openings)."""

from __future__ import annotations

import dataclasses

from storyjax import settings_record
from storyjax.data import DataSettings
from storyjax.sampler import Sampling
from storyjax.teachers import kinds
from storyjax.teachers.grader_settings import GraderSettings


@dataclasses.dataclass(frozen=True)
class Stories:
    openings: str = "heldout"       # heldout | corpus | training (storyjax.prompts.story_openings)
    num_openings: int = 52
    per_opening: int = 4
    batch: int = 128
    exclude: tuple = ()             # openings left out (the prompts the student learned from)
    prompt: str = ""                # openings=training: the training prompt itself


@dataclasses.dataclass(frozen=True)
class EvaluateSettings:
    checkpoint: str = ""            # a run's workdir or RUN/milestones/chck_N
    init_from_hf: str = ""          # or a transformers GPT-2 folder
    blimp_dir: str = ""
    perplexity: bool = True
    max_val_blocks: int = 256
    data: DataSettings = DataSettings()
    seed: int = 1234
    stories: Stories = Stories()
    sampling: Sampling = Sampling()
    teacher: GraderSettings = GraderSettings()
    progress_bar: bool = True

    @classmethod
    def from_config(cls, config, **per_student) -> "EvaluateSettings":
        """The record of an evaluation section (or a record, passed through) with `per_student` settings a
        composing job gives itself (`evaluate.parse` checks it)."""
        if isinstance(config, cls):
            return dataclasses.replace(config, **per_student)
        values = {k: v for k, v in settings_record.as_dict(config).items() if k != "job"}
        values.update(per_student)
        parsed = {}
        if "teacher" in values:
            parsed["teacher"] = kinds.record(values.pop("teacher"), "teacher")  # checked by `evaluate.parse`
        if "data" in values:
            parsed["data"] = settings_record.parse(DataSettings, values.pop("data"), "data")
        return dataclasses.replace(settings_record.parse(cls, values, ""), **parsed)
