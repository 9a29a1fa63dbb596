"""The pretraining step: a pure function of (state, batch, step), pmapped over the devices of all hosts.

Gradient accumulation is a `lax.scan` over micro-batches inside the step, so
one optimizer update sees the whole global batch; gradients and the loss are
`lax.pmean`'d over the device axis. Dropout RNG is derived from the step
number (and the device and micro-batch index), so resuming needs no RNG state.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import optax

from storyjax import model as model_lib

AXIS = "devices"


class TrainState(NamedTuple):
    params: Any
    opt_state: Any


def lr_schedule(train_cfg: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
    """Linear warmup to `lr`, then linear decay to zero at `total_steps` (the paper's schedule)."""
    warmup = max(1, int(round(train_cfg.warmup_frac * total_steps)))
    return optax.join_schedules(
        [optax.linear_schedule(0.0, train_cfg.lr, warmup),
         optax.linear_schedule(train_cfg.lr, 0.0, max(1, total_steps - warmup))], [warmup])


def _decay_mask(params):
    # Decay weight matrices and embeddings only, never biases or LayerNorm parameters (HF GPT-2 convention).
    return jax.tree_util.tree_map_with_path(
        lambda path, _: getattr(path[-1], "key", "") in ("kernel", "embedding"), params)


def make_optimizer(train_cfg: ml_collections.ConfigDict, total_steps: int) -> optax.GradientTransformation:
    return optax.chain(
        optax.clip_by_global_norm(train_cfg.grad_clip),
        optax.adamw(lr_schedule(train_cfg, total_steps), b1=train_cfg.b1, b2=train_cfg.b2, eps=train_cfg.eps,
                    weight_decay=train_cfg.weight_decay, mask=_decay_mask))


def next_token_loss(model_cfg: model_lib.ModelConfig, params, tokens_BxT, rng=None):
    """Mean cross-entropy of predicting tokens[1:] from tokens[:-1] (HF GPT-2's shift)."""
    logits_BxTxV = model_lib.forward(model_cfg, params, tokens_BxT[:, :-1], rng=rng)
    return optax.softmax_cross_entropy_with_integer_labels(logits_BxTxV, tokens_BxT[:, 1:]).mean()


def global_mean(tree, how: str = "mean"):
    """Mean over the device axis. "mean": lax.pmean (an all-reduce; the sum's order depends on how devices
    are spread over hosts, so 2 hosts × 2 devices and 1 host × 4 differ in the last bits). "ordered": gather
    every device's copy and sum them in device order: bit-identical for any split of the same devices over
    hosts, at the cost of D gathered copies (for verification runs and small device counts)."""
    if how == "mean":
        return jax.lax.pmean(tree, AXIS)
    if how == "ordered":
        n = jax.lax.psum(1, AXIS)
        return jax.tree.map(lambda x: jax.lax.all_gather(x, AXIS).sum(0) / n, tree)
    raise ValueError(f"unknown reduction {how!r}")


def make_train_step(model_cfg: model_lib.ModelConfig, optimizer: optax.GradientTransformation,
                    schedule: optax.Schedule, seed: int, dropout: bool = True, devices=None,
                    grad_reduce: str = "mean") -> Callable:
    """Returns the pmapped step: (state, tokens_DxAxBxT, step_D) → (state, metrics)."""
    if grad_reduce not in ("mean", "ordered"):  # fail here, not inside the trace
        raise ValueError(f"train.grad_reduce={grad_reduce!r}: use 'mean' or 'ordered'.")

    def step_fn(state: TrainState, tokens_AxBxT, step):
        rng = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), step), jax.lax.axis_index(AXIS))
        def grad_fn(tokens_BxT, i):
            micro_rng = jax.random.fold_in(rng, i) if dropout else None
            return jax.value_and_grad(lambda p: next_token_loss(model_cfg, p, tokens_BxT, micro_rng))(state.params)

        def micro(carry, xs):
            loss_sum, grad_sum = carry
            loss, grads = grad_fn(*xs)
            return (loss_sum + loss, jax.tree.map(jnp.add, grad_sum, grads)), None

        A = tokens_AxBxT.shape[0]
        if A == 1:  # no accumulation: skip the loop and its zero-filled float32 gradient carry
            loss_sum, grad_sum = grad_fn(tokens_AxBxT[0], 0)
        else:
            zeros = jax.tree.map(jnp.zeros_like, state.params)
            (loss_sum, grad_sum), _ = jax.lax.scan(micro, (jnp.zeros(()), zeros), (tokens_AxBxT, jnp.arange(A)))
        grads = global_mean(jax.tree.map(lambda g: g / A, grad_sum), grad_reduce)
        loss = global_mean(loss_sum / A, grad_reduce)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        # Whether the state this step returns may be checkpointed (a finite loss can precede a NaN update).
        metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads), "lr": schedule(step),
                   "state_finite": model_lib.all_finite((params, opt_state))}
        return TrainState(params, opt_state), metrics

    return jax.pmap(step_fn, axis_name=AXIS, donate_argnums=(0,), devices=devices)


def make_eval_step(model_cfg: model_lib.ModelConfig, devices=None) -> Callable:
    """Pmapped mean next-token loss over tokens_DxBxT (all devices hold equal rows)."""

    def eval_fn(params, tokens_BxT):
        return jax.lax.pmean(next_token_loss(model_cfg, params, tokens_BxT), AXIS)

    return jax.pmap(eval_fn, axis_name=AXIS, devices=devices)


def replicate(tree, devices, n_local: int):
    """Puts one copy of `tree` on each of this process's `n_local` devices (`devices`: pmap's argument)."""
    return jax.pmap(lambda _, t: t, in_axes=(0, None), devices=devices)(jnp.arange(n_local), tree)
