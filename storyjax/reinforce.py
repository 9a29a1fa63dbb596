"""REINFORCE with a baseline over batched teacher scores, as one jitted pure function of arrays.

    loss = -(1/B) Σ_i Σ_t A_it log π(y_it | y_<it)  [+ β·KL(π‖π_ref) per token]  - η·H(π)

A_it = r_i − b_i (less the KL penalty's share, below), b from an exponential moving average (default;
carried in the state and checkpointed), the batch mean, or leave-one-out. A story the teacher could not
score (reward NaN) gets A = 0 and is left out of every baseline and statistic. The KL to the frozen
starting model is either subtracted from the reward as its log-ratio (once per story, or per token as
trl's PPO does, each token charged what it and its successors incur: `reward_token`) or added to the loss
with the k1 or k3 estimator (which also gives the KL reported and controlled); its coefficient is fixed
or follows trl's adaptive controller (target, horizon).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from storyjax import model as model_lib
from storyjax import rollout as rollout_lib
from storyjax.setting_checks import finite

BASELINES = ("ema", "batch_mean", "leave_one_out")
KL_MODES = ("reward", "reward_token", "loss")
KL_ESTIMATORS = ("k1", "k3")


class RLState(NamedTuple):
    params: Any
    opt_state: Any
    baseline: jax.Array  # EMA of the mean scored reward; NaN until the first scored batch
    kl_coef: jax.Array


def advantages(rewards_B, baseline, kind: str, ema_decay: float, whiten: bool):
    """Returns (advantage_B, new EMA baseline); unscored rows (NaN reward) get 0 and are ignored."""
    scored_B = jnp.isfinite(rewards_B)
    n = scored_B.sum()
    r_B = jnp.where(scored_B, rewards_B, 0.0)
    mean = r_B.sum() / jnp.maximum(n, 1)
    if kind == "ema":
        b_B = jnp.where(jnp.isnan(baseline), mean, baseline) * jnp.ones_like(r_B)
    elif kind == "batch_mean":
        b_B = mean * jnp.ones_like(r_B)
    elif kind == "leave_one_out":
        b_B = (r_B.sum() - r_B) / jnp.maximum(n - 1, 1)
    else:
        raise ValueError(f"rl.baseline={kind!r} is unknown; choose one of {BASELINES}.")
    adv_B = jnp.where(scored_B, r_B - b_B, 0.0)
    if whiten:
        adv_B = whitened(adv_B, scored_B)
    ema = jnp.where(n > 0, jnp.where(jnp.isnan(baseline), mean, ema_decay * baseline + (1 - ema_decay) * mean),
                    baseline)
    return adv_B, ema


def whitened(adv_B, scored_B):
    """Advantages centred and scaled to unit variance over the scored rows (unscored rows stay 0)."""
    n = scored_B.sum()
    centred_B = jnp.where(scored_B, adv_B - adv_B.sum() / jnp.maximum(n, 1), 0.0)
    var = (centred_B ** 2).sum() / jnp.maximum(n - 1, 1)
    return centred_B / jnp.sqrt(var + 1e-8)


def batch_centred(values_B, kind: str):
    """The finite values less their batch's centre (leave-one-out with that baseline, else the mean; a KL
    penalty has no history for an EMA to follow), 0 where NaN."""
    return advantages(values_B, jnp.nan, "leave_one_out" if kind == "leave_one_out" else "batch_mean", 0.0,
                      whiten=False)[0]


def kl_advantages(rewards_B, kl_B, kl_coef, baseline, kind: str, ema_decay: float, whiten: bool):
    """Advantages of the KL-penalised reward r_i − β·KL_i, and the new EMA baseline.

    The baseline follows the teacher's reward alone; the penalty is centred within its own batch. An EMA
    of the penalised reward lags it whenever the adaptive controller raises β, and then every advantage
    is negative (measured on the CPU quickstart student: the mean advantage fell to −2 per story)."""
    scored_B = jnp.isfinite(rewards_B)
    adv_B, ema = advantages(rewards_B, baseline, kind, ema_decay, whiten=False)
    adv_B = adv_B - kl_coef * batch_centred(jnp.where(scored_B, kl_B, jnp.nan), kind)
    return (whitened(adv_B, scored_B) if whiten else adv_B), ema


def kl_token_advantages(rewards_B, kl_BxT, mask_BxT, kl_coef, baseline, kind: str, ema_decay: float,
                        whiten: bool):
    """Per-token advantages of the teacher's reward with a per-token KL penalty −β·KL_t (trl PPO's reward shape,
    value-free): A_it = (r_i − b) − β·(Σ_{s≥t} KL_is − its batch mean at t), and the new EMA baseline.

    A token answers only for the KL it and its successors incur, not for the tokens before it (whose
    penalty is noise to its gradient in `kl_advantages`); the score's baseline follows the teacher's
    reward, the KL-to-go is centred per position over the stories still going there. Measured on the CPU
    quickstart student it held the KL no better than the per-story penalty (README, Holding the KL)."""
    scored_B = jnp.isfinite(rewards_B)
    adv_B, ema = advantages(rewards_B, baseline, kind, ema_decay, whiten=False)
    live_BxT = (mask_BxT > 0) & scored_B[:, None]
    togo_BxT = jnp.cumsum(jnp.where(live_BxT, kl_BxT, 0.0)[:, ::-1], axis=1)[:, ::-1]
    centred = jax.vmap(lambda togo_B: batch_centred(togo_B, kind), in_axes=1, out_axes=1)
    adv_BxT = jnp.where(live_BxT, adv_B[:, None] - kl_coef * centred(jnp.where(live_BxT, togo_BxT, jnp.nan)), 0.0)
    if whiten:
        adv_BxT = whitened(adv_BxT, live_BxT)
    return adv_BxT, ema


def kl_per_token(logp, logp_ref, estimator: str):
    """KL(π‖π_ref) estimated on tokens sampled from π: k1 = log π/π_ref, k3 = (ρ − 1) − log ρ, ρ = π_ref/π."""
    if estimator == "k1":
        return logp - logp_ref
    if estimator == "k3":
        log_ratio = logp_ref - logp
        return jnp.expm1(log_ratio) - log_ratio
    raise ValueError(f"rl.kl_estimator={estimator!r}: use one of {KL_ESTIMATORS}.")


def adaptive_kl(kl_coef, kl_mean, target: float, horizon: float, batch: int):
    """trl's AdaptiveKLController: nudges β so the observed KL tracks `target` over `horizon` samples."""
    error = jnp.clip(kl_mean / target - 1.0, -0.2, 0.2)
    return kl_coef * (1.0 + error * batch / horizon)


@dataclasses.dataclass(frozen=True)
class RLConfig:
    """The `rl` section, parsed and checked once (`from_config`) before any work; the step, the optimizer
    and the state read this record, never the ConfigDict."""
    lr: float = 3e-5
    grad_clip: float = 1.0
    baseline: str = "ema"           # one of BASELINES
    ema_decay: float = 0.9
    whiten: bool = False
    kl_coef: float = 0.05           # the KL penalty's starting coefficient β
    kl_target: float = 0.0          # > 0: β follows trl's adaptive controller toward this KL
    kl_horizon: float = 10_000.0
    kl_estimator: str = "k3"        # one of KL_ESTIMATORS
    kl_mode: str = "reward"         # one of KL_MODES
    entropy_coef: float = 0.0

    @classmethod
    def from_config(cls, rl_cfg) -> "RLConfig":
        """The record of an `rl` section, a ConfigDict or dict (refused as `__post_init__` says)."""
        return cls(**{f.name: rl_cfg[f.name] for f in dataclasses.fields(cls)})

    def __post_init__(self) -> None:
        """Refuses settings no run can use, one line naming the key and the fix: a record that exists is valid."""
        if self.baseline not in BASELINES:
            raise ValueError(f"rl.baseline={self.baseline!r} is unknown; choose one of {BASELINES}.")
        if self.kl_mode not in KL_MODES:
            raise ValueError(f"rl.kl_mode={self.kl_mode!r}: use 'reward' (one penalty per story), 'reward_token' "
                             "(a penalty per token, as trl's PPO) or 'loss'.")
        # Names only: validation runs before jax.distributed.initialize, when no array may exist yet.
        if self.kl_estimator not in KL_ESTIMATORS:
            raise ValueError(f"rl.kl_estimator={self.kl_estimator!r}: use one of {KL_ESTIMATORS}.")
        # The k1 term log π − log π_ref, differentiated through π on the student's own samples, has zero
        # expected gradient (E_π[∇ log π] = 0): as a loss it would remove the penalty while reporting it.
        if self.kl_mode == "loss" and self.kl_estimator == "k1":
            raise ValueError("rl.kl_mode='loss' with rl.kl_estimator='k1' has zero expected gradient (no KL "
                             "penalty at all): use rl.kl_estimator='k3' with the loss, or rl.kl_mode='reward'.")
        problems = [f"rl.{name}={getattr(self, name)!r} must be {rule}" for name, ok, rule in (
            ("ema_decay", finite(self.ema_decay) and 0 <= self.ema_decay < 1, "in [0, 1) (e.g. 0.9)"),
            ("kl_coef", finite(self.kl_coef) and self.kl_coef >= 0, ">= 0 (paper: 0.2)"),
            ("kl_target", finite(self.kl_target) and self.kl_target >= 0, ">= 0 (0: a fixed coefficient; paper: 6)"),
            ("kl_horizon", finite(self.kl_horizon) and self.kl_horizon > 0, "> 0 (paper: 10000)"),
            ("grad_clip", finite(self.grad_clip) and self.grad_clip > 0, "> 0 (a global norm, e.g. 1.0)"),
            ("entropy_coef", finite(self.entropy_coef), "a finite number (0: no entropy bonus)")) if not ok]
        if problems:
            raise ValueError("; ".join(problems) + ".")


def make_optimizer(rl: RLConfig) -> optax.GradientTransformation:
    return optax.chain(optax.clip_by_global_norm(rl.grad_clip),
                       optax.adamw(rl.lr, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0))


def token_advantages(rl_cfg: RLConfig, rewards_B, log_ratio_BxT, mask_BxT, kl_coef, baseline):
    """(each response token's advantage, the rewards' new moving average) under `rl.kl_mode`: the KL
    penalty charged per token (reward_token), once per story (reward), or not in the reward (loss)."""
    if rl_cfg.kl_mode == "reward_token":
        return kl_token_advantages(rewards_B, log_ratio_BxT, mask_BxT, kl_coef, baseline, rl_cfg.baseline,
                                   rl_cfg.ema_decay, rl_cfg.whiten)
    if rl_cfg.kl_mode == "reward":
        adv_B, ema = kl_advantages(rewards_B, log_ratio_BxT.sum(-1), kl_coef, baseline, rl_cfg.baseline,
                                   rl_cfg.ema_decay, rl_cfg.whiten)
    else:
        adv_B, ema = advantages(rewards_B, baseline, rl_cfg.baseline, rl_cfg.ema_decay, rl_cfg.whiten)
    return adv_B[:, None] * mask_BxT, ema


def make_step(cfg: model_lib.ModelConfig, rl_cfg: RLConfig, optimizer: optax.GradientTransformation) -> Callable:
    """Returns jit(step)(state, ref_params, rollout) → (state, metrics): the rollout carries each story's
    reward (storyjax.reward, computed on the host; NaN where unscorable), `metrics` the batch's scalars."""
    if not isinstance(rl_cfg, RLConfig):
        raise TypeError(f"make_step takes a reinforce.RLConfig, not {type(rl_cfg).__name__}: parse the `rl` "
                        "section once with RLConfig.from_config.")
    kl_estimator = rl_cfg.kl_estimator

    def step(state: RLState, ref_params, rollout: rollout_lib.Rollout):
        tokens_BxL, valid_BxL = rollout.tokens_BxL, rollout.valid_BxL
        mask_BxT = rollout.response_BxL[:, 1:].astype(jnp.float32)
        logp_ref_BxT, _ = model_lib.sequence_logprobs(cfg, ref_params, tokens_BxL, valid_BxL, entropy=False)
        logp_ref_BxT = jax.lax.stop_gradient(logp_ref_BxT)
        rewards_B = rollout.reward_B
        scored_B = jnp.isfinite(rewards_B)
        B = tokens_BxL.shape[0]

        def loss_fn(params):
            logp_BxT, entropy_BxT = model_lib.sequence_logprobs(cfg, params, tokens_BxL, valid_BxL)
            kl_BxT = kl_per_token(logp_BxT, logp_ref_BxT, kl_estimator) * mask_BxT
            kl_B = kl_BxT.sum(-1)
            # A penalty in the reward is differentiated by REINFORCE, whose gradient is the KL's only for the
            # log-ratio (k1): k3 charges the tokens π under-weights too, pushing π further from π_ref (measured:
            # the KL held at twice its target while β rose 0.05 → 1.8). The estimator chooses what is
            # reported, controlled and put in a loss.
            log_ratio_BxT = jax.lax.stop_gradient(logp_BxT - logp_ref_BxT) * mask_BxT
            adv_BxT, ema = token_advantages(rl_cfg, rewards_B, log_ratio_BxT, mask_BxT, state.kl_coef,
                                            state.baseline)
            adv_BxT = jax.lax.stop_gradient(adv_BxT)
            policy = -(adv_BxT * logp_BxT * mask_BxT).sum() / B
            n_tokens = jnp.maximum(mask_BxT.sum(), 1.0)
            entropy = (entropy_BxT * mask_BxT).sum() / n_tokens
            # reported either way; differentiated only when it is in the loss
            loss = policy - rl_cfg.entropy_coef * entropy if rl_cfg.entropy_coef else policy
            entropy = entropy if rl_cfg.entropy_coef else jax.lax.stop_gradient(entropy)
            if rl_cfg.kl_mode == "loss":
                loss = loss + state.kl_coef * kl_BxT.sum() / B
            aux = dict(policy_loss=policy, entropy=entropy, kl=kl_B.mean(),
                       advantage_abs=jnp.abs(adv_BxT).sum() / n_tokens,
                       ema=ema, reward_scored=jnp.where(scored_B, rewards_B, 0.0).sum() / jnp.maximum(scored_B.sum(), 1))
            return loss, aux

        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        grad_norm = optax.tree.norm(grads)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        kl_coef = state.kl_coef
        if rl_cfg.kl_target > 0:
            kl_coef = adaptive_kl(kl_coef, aux["kl"], rl_cfg.kl_target, rl_cfg.kl_horizon, B)
        metrics = dict(loss=loss, grad_norm=grad_norm, kl_coef=state.kl_coef,
                       baseline=jnp.where(jnp.isnan(state.baseline), aux["ema"], state.baseline),
                       # a finite loss and gradient norm give a finite update of a state checked when made
                       scored=scored_B.sum(), state_finite=jnp.isfinite(loss) & jnp.isfinite(grad_norm),
                       **{k: v for k, v in aux.items() if k != "ema"})
        new_baseline = aux["ema"] if rl_cfg.baseline == "ema" else state.baseline
        return RLState(params, opt_state, new_baseline, kl_coef), metrics

    return jax.jit(step, donate_argnums=(0,))


def init_state(params, optimizer, rl_cfg: RLConfig) -> RLState:
    """A fresh state on a *copy* of `params`: the step donates its state, the frozen reference must survive."""
    params = jax.tree.map(jnp.copy, params)
    return RLState(params, optimizer.init(params), jnp.asarray(np.nan, jnp.float32),
                   jnp.asarray(rl_cfg.kl_coef, jnp.float32))
