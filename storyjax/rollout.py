"""One batch of interactive learning as a single record: what the student wrote and what the teacher said.

Built on the host after grading and handed whole to the jitted REINFORCE step, which computes the
reward from it; the loop and the logs read the reward back from the step's metrics rather than computing
it again.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from storyjax import sampler
from storyjax.teachers.base import scored


class Rollout(NamedTuple):
    tokens_BxL: jax.Array    # left-padded prompt, then the sampled story
    valid_BxL: jax.Array     # real tokens (prompt and story, end-of-text included)
    response_BxL: jax.Array  # the student's own tokens: the ones the policy gradient flows through
    scores_Bx3: jax.Array    # the teacher's grades; a row with any NaN is unscorable
    words_B: jax.Array       # counted words of each continuation (the length bonus reads them)


def make(prompt_BxP, prompt_valid_BxP, samples: sampler.Samples, scores_Bx3, words_B) -> Rollout:
    """The record of a batch: prompt and story side by side, the grades with unscorable rows wholly NaN."""
    scores_Bx3 = np.asarray(scores_Bx3, np.float32)
    scores_Bx3 = np.where(scored(scores_Bx3)[:, None], scores_Bx3, np.nan)
    return Rollout(tokens_BxL=jnp.concatenate([prompt_BxP, samples.tokens_BxN], 1),
                   valid_BxL=jnp.concatenate([prompt_valid_BxP, samples.mask_BxN], 1),
                   response_BxL=jnp.concatenate([jnp.zeros_like(prompt_valid_BxP), samples.mask_BxN], 1),
                   scores_Bx3=jnp.asarray(scores_Bx3), words_B=jnp.asarray(words_B, jnp.float32))


def permuted_grades(scores_Bx3, seed: int, step: int) -> np.ndarray:
    """The random-reward control: the scored rows' grades shuffled among themselves (unscorable rows stay
    where they are), so a batch keeps its grades' distribution and mean but a story's grades are no longer
    its own. Drawn from (seed, step): a resumed run permutes a step as it did the first time."""
    scores_Bx3 = np.array(scores_Bx3, np.float32)
    rows = np.flatnonzero(scored(scores_Bx3))
    scores_Bx3[rows] = scores_Bx3[np.random.default_rng([seed, step, 0x5eed]).permutation(rows)]
    return scores_Bx3
