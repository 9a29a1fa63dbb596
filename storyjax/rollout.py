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
