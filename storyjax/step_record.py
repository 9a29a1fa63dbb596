"""One interactive step on the host, from the teacher's grades to the logs: the stories, their grades,
which were graded (decided once, here), the counted words and each story's reward from the single reward
function that owns every control. Its arrays go to the jitted REINFORCE update (as a `rollout.Rollout`),
which returns the batch's scalars; the ledger charges its counts and the logs write it."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from storyjax import reward as reward_lib
from storyjax import rollout as rollout_lib
from storyjax import sampler
from storyjax.grades import Grades, scored
from storyjax.tokenizer import count_words


class StepRecord(NamedTuple):
    full: list                      # prompt + story texts
    grades: Grades
    scored_B: np.ndarray            # graded stories (all three grades finite)
    words_B: np.ndarray             # counted words of each continuation
    rewards: reward_lib.StoryRewards  # reward_B (what REINFORCE maximises), teacher_B, bonus_B
    samples: sampler.Samples        # the student's tokens, their mask and log-probs
    words_before: int               # the ledger's input words before this batch

    def rollout(self, prompt_BxP, prompt_valid_BxP) -> rollout_lib.Rollout:
        """The arrays of this step that the jitted update reads."""
        return rollout_lib.make(prompt_BxP, prompt_valid_BxP, self.samples, self.rewards.reward_B)

    @property
    def lengths_B(self) -> np.ndarray:
        """Tokens each story took."""
        return np.asarray(self.samples.mask_BxN).sum(1)

    @property
    def surprisal_B(self) -> np.ndarray:
        """Each story's −Σ log p of its own sampled tokens (the paper's entropy, summed)."""
        return -np.asarray(self.samples.logprobs_BxN).sum(1)


def make(full: list, texts: list, grades: Grades, samples: sampler.Samples, reward: reward_lib.RewardConfig,
         seed: int, step: int, words_before: int) -> StepRecord:
    """The record of step `step` (0-based: the reward's permutations are drawn from (seed, step))."""
    scored_B = scored(grades.scores_Bx3)
    words_B = np.asarray([count_words(t) for t in texts], np.float32)
    rewards = reward_lib.story_rewards(reward, grades.scores_Bx3, words_B, seed, step, scored_B)
    return StepRecord(full, grades, scored_B, words_B, rewards, samples, words_before)
