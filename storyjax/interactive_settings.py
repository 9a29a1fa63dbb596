"""An interactive run's settings (configs/interactive.py), parsed once into frozen records at the job's entry.

The loop, the held-out score, the sampler and the judge read these records; the experiment composes its
runs from one of them with `dataclasses.replace` (a milestone, a seed, a control, a teacher), so what a run
reads is what its record holds. `from_config` builds the record (refusing, in one line naming the key, a
setting it does not have and the bad values of the rl and reward sections); `storyjax.interactive.check`
refuses the rest, before any work.
"""

from __future__ import annotations

import dataclasses

from storyjax import settings_record
from storyjax.reinforce import RLConfig
from storyjax.reward import RewardConfig
from storyjax.sampler import Sampling
from storyjax.teachers import kinds
from storyjax.teachers.grader_settings import GraderSettings

# Keys of configs/interactive.py read by `storyjax.main` (which job, the pretraining recipe of a run that
# pretrains its student first, the processes), not by the run itself.
ENTRY_KEYS = ("job", "preset", "pretrain", "distributed")


@dataclasses.dataclass(frozen=True)
class Heldout:
    num_openings: int = 52          # held-out openings graded before and after learning (0: none)
    stories_per_opening: int = 1


@dataclasses.dataclass(frozen=True)
class MilestoneEval:
    heldout: bool = True            # the held-out score at each milestone
    blimp_dir: str = ""             # and BLiMP accuracy on this directory of minimal pairs


@dataclasses.dataclass(frozen=True)
class InteractiveSettings:
    prompt: str
    batch_size: int
    budget_words: int
    seed: int = 0
    progress_bar: bool = True
    log_every: int = 10
    ledger_only: bool = False
    init_checkpoint: str = ""       # a pretraining run (its workdir, or RUN/milestones/chck_N)
    init_milestone: str = ""
    init_from_hf: str = ""
    export_hf: bool = False
    auto_pretrain: bool = False
    compute_dtype: str = "float32"
    sampling: Sampling = Sampling()
    reward: RewardConfig = RewardConfig()
    rl: RLConfig = RLConfig()
    teacher: GraderSettings = GraderSettings()
    judge: GraderSettings = GraderSettings(name="auto")
    charge_prompt: str = "once"
    generated_words_cap: int = 100_000_000
    milestone_every_words: int = 0
    max_steps: int = 0
    checkpoint_every_steps: int = 10
    heldout: Heldout = Heldout()
    milestone_eval: MilestoneEval = MilestoneEval()

    @classmethod
    def from_config(cls, config, **per_run) -> "InteractiveSettings":
        """The record of an interactive section (a ConfigDict, or a dict), with `per_run` settings a composing
        job gives itself (the experiment: seed, start, judge); not yet checked (`interactive.parse` checks)."""
        values = {k: v for k, v in settings_record.as_dict(config).items() if k not in ENTRY_KEYS}
        values.update(per_run)
        # structure only: their values and files are checked after every other setting (`interactive.check`)
        graders = {key: kinds.record(values.pop(key), key) for key in ("teacher", "judge") if key in values}
        return dataclasses.replace(settings_record.parse(cls, values, ""), **graders)
