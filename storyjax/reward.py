"""The per-story reward of interactive learning, and every control run's version of it, in one place.

The paper's reward for story i with grades R, N, C in 0..3 and w counted words of continuation:

    r_i = ((R+N+C)/9 + 0.4·min(w, 90)/90) / 1.4

(general form: weighted grades over their maximum, plus `length_bonus`·min(w, norm)/norm, over 1 +
length_bonus). A story the teacher could not grade gets NaN: REINFORCE leaves it out of every baseline and
gives it no advantage.

The controls of an experiment differ from the real run only here, so each holds everything else of the
run fixed (sampling, KL, the teacher grading every story, the word count, the unscorable mask):

- `grades_permuted`: the teacher's grades shuffled among the batch's graded stories. The length bonus
  stays each story's own, so this control still learns length at the real run's strength; it removes
  only the link between a story and its grades.
- `reward_permuted`: each story's whole reward (grades and length bonus) shuffled among the batch's graded
  stories: pure noise with the real reward's distribution, the null control.
- `length_only`: the real reward's length term alone, 0.4·min(w, 90)/90 / 1.4, at the strength it has in
  the real reward (not rescaled to 0..1, which would push length 3.5× harder than the real run does).

Permutations are drawn from (seed, step), so a resumed run replays a step exactly. Computed on the host
(numpy) before the jitted update, which sees only `reward_B`.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np

from storyjax.grades import scored
from storyjax.setting_checks import finite

CONTROLS = ("", "grades_permuted", "reward_permuted", "length_only")  # "": learn from the teacher's grades
# Names used before the controls were made honest, and what each became (refused with the new name).
RENAMED = {"random_reward": "grades_permuted"}


@dataclasses.dataclass(frozen=True)
class RewardConfig:
    """The reward's settings, checked once (`from_config`) before any work."""
    weights: tuple[float, float, float] = (1.0, 1.0, 1.0)  # readability, coherence, creativity
    length_bonus: float = 0.4
    length_norm: float = 90.0
    control: str = ""  # one of CONTROLS

    @classmethod
    def from_config(cls, reward_cfg) -> "RewardConfig":
        """The record of a `reward` section (a ConfigDict; refused as `__post_init__` says)."""
        return cls(tuple(float(w) for w in reward_cfg.weights), reward_cfg.length_bonus, reward_cfg.length_norm,
                   reward_cfg.control)

    def __post_init__(self) -> None:
        """Refuses settings no run can use, one line naming the key: a record that exists is valid (a copy made
        with `dataclasses.replace` is checked again)."""
        weights = tuple(self.weights)
        if len(weights) != 3 or min(weights) < 0 or sum(weights) <= 0:
            raise ValueError(f"reward.weights={self.weights}: give three non-negative weights (readability, "
                             "coherence, creativity) that do not all vanish; the paper's are (1, 1, 1).")
        if not (finite(self.length_norm) and self.length_norm > 0):
            raise ValueError(f"reward.length_norm={self.length_norm}: give a positive word count (paper: 90).")
        if not (finite(self.length_bonus) and self.length_bonus >= 0):
            raise ValueError(f"reward.length_bonus={self.length_bonus}: use 0 (none) or a positive weight "
                             "(paper: 0.4).")
        check_control(self.control, "reward.control")
        if self.control == "length_only" and self.length_bonus == 0:
            raise ValueError("reward.control='length_only' rewards the real reward's length term, and "
                             "reward.length_bonus=0 leaves none: set reward.length_bonus (paper: 0.4).")


def check_control(control: str, key: str) -> str:
    """`control` if it is one of CONTROLS, else a one-line refusal naming `key` and the choices."""
    if control in RENAMED:
        raise ValueError(f"{key}={control!r} was renamed {RENAMED[control]!r} (the teacher's grades permuted "
                         "within each batch; each story keeps its own length bonus): use that name.")
    if control not in CONTROLS:
        raise ValueError(f"{key}={control!r}: leave it empty (learn from the teacher) or choose a control run, "
                         f"one of {CONTROLS[1:]}.")
    return control


class StoryRewards(NamedTuple):
    """Per story (host arrays, NaN where the teacher could not grade)."""
    reward_B: np.ndarray   # what REINFORCE maximises (the control's, in a control run)
    teacher_B: np.ndarray  # the teacher's weighted grades of the story itself, 0..1
    bonus_B: np.ndarray    # the story's own length bonus, before the 1 + bonus normalisation


def _permuted(values, rows, seed: int, step: int, salt: int):
    """`values` with the entries at `rows` shuffled among themselves, drawn from (seed, step, salt)."""
    out = np.array(values, np.float32)
    out[rows] = out[np.random.default_rng([seed, step, salt]).permutation(rows)]
    return out


def story_rewards(reward: RewardConfig, scores_Bx3, words_B, seed: int = 0, step: int = 0,
                  scored_B=None) -> StoryRewards:
    """Each story's reward under `reward` (its control included) for the batch of step `step`; `scored_B`:
    the graded stories, where the caller has decided them already."""
    scores_Bx3 = np.asarray(scores_Bx3, np.float32)
    scored_B = scored(scores_Bx3) if scored_B is None else np.asarray(scored_B, bool)
    rows = np.flatnonzero(scored_B)
    weights_3 = np.asarray(reward.weights, np.float32)
    weighted = lambda s_Bx3: np.where(scored_B, (s_Bx3 * weights_3).sum(-1) / (3.0 * weights_3.sum()), np.nan)
    teacher_B = weighted(scores_Bx3)
    length_B = np.minimum(np.asarray(words_B, np.float32), reward.length_norm) / reward.length_norm
    bonus_B = (reward.length_bonus * length_B).astype(np.float32)
    norm = 1.0 + reward.length_bonus
    if reward.control == "grades_permuted":
        reward_B = (weighted(_permuted(scores_Bx3, rows, seed, step, 0x5eed)) + bonus_B) / norm
    elif reward.control == "length_only":
        reward_B = np.where(scored_B, bonus_B / norm, np.nan)
    else:
        reward_B = (teacher_B + bonus_B) / norm
        if reward.control == "reward_permuted":
            reward_B = _permuted(reward_B, rows, seed, step, 0x7e3a)
    return StoryRewards(reward_B.astype(np.float32), teacher_B.astype(np.float32), bonus_B)
