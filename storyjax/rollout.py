"""One batch of interactive learning as the jitted REINFORCE step reads it: the tokens the student wrote
and each story's reward (storyjax.reward, computed on the host from the teacher's grades)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from storyjax import sampler


class Rollout(NamedTuple):
    tokens_BxL: jax.Array    # left-padded prompt, then the sampled story
    valid_BxL: jax.Array     # real tokens (prompt and story, end-of-text included)
    response_BxL: jax.Array  # the student's own tokens: the ones the policy gradient flows through
    reward_B: jax.Array      # each story's reward; NaN where the teacher could not grade it (no advantage)


def make(prompt_BxP, prompt_valid_BxP, samples: sampler.Samples, reward_B) -> Rollout:
    """The record of a batch: prompt and story side by side, with each story's reward."""
    return Rollout(tokens_BxL=jnp.concatenate([prompt_BxP, samples.tokens_BxN], 1),
                   valid_BxL=jnp.concatenate([prompt_valid_BxP, samples.mask_BxN], 1),
                   response_BxL=jnp.concatenate([jnp.zeros_like(prompt_valid_BxP), samples.mask_BxN], 1),
                   reward_B=jnp.asarray(np.asarray(reward_B, np.float32)))
