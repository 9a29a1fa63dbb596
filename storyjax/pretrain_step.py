"""The pretraining step: a pure function of (state, batch, step), data-parallel over the devices of all hosts.

Each device runs the same per-device program on its rows of the global batch, and gradients and the loss
are `lax.pmean`'d over the "devices" axis: pmap's model, written as `jit(shard_map(...))` over a 1-D mesh.
The state is one replicated copy per device (global arrays, not pmap's stacked `[devices, ...]` replicas):
with stacked replicas the compiled step copied every parameter and Adam moment at entry (445 copies of
state-sized buffers at gpt2_small with jax 0.10, `jax.pmap` and a shard_map over stacked arrays alike),
where the replicated state is donated and updated in place like a plain `jit` step's.

Gradient accumulation is a `lax.scan` over micro-batches inside the step, so one optimizer update sees the
whole global batch. Dropout RNG is derived from the step number (and the device and micro-batch index), so
resuming needs no RNG state.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import PartitionSpec as P

from storyjax import model as model_lib
from storyjax import output_layer

AXIS = "devices"
# Dropout masks from XLA's RngBitGenerator (Philox) rather than threefry: threefry's hash, computed for every
# mask element, was 1.39x the bytes of a step without dropout; mask bits need no cryptographic quality.
DROPOUT_RNG = "unsafe_rbg"


class TrainState(NamedTuple):
    params: Any
    opt_state: Any


def lr_schedule(train_cfg, total_steps: int) -> optax.Schedule:
    """Linear warmup to `lr`, then linear decay to zero at `total_steps` (the paper's schedule)."""
    warmup = max(1, int(round(train_cfg.warmup_frac * total_steps)))
    return optax.join_schedules(
        [optax.linear_schedule(0.0, train_cfg.lr, warmup),
         optax.linear_schedule(train_cfg.lr, 0.0, max(1, total_steps - warmup))], [warmup])


def _decay_mask(params):
    # Decay weight matrices and embeddings only, never biases or LayerNorm parameters (HF GPT-2 convention).
    return jax.tree_util.tree_map_with_path(
        lambda path, _: getattr(path[-1], "key", "") in ("kernel", "embedding"), params)


def make_optimizer(train_cfg, total_steps: int) -> optax.GradientTransformation:
    """Clipping, then AdamW as optax builds it (Adam's moments, decoupled decay on matrices and embeddings,
    the schedule). With `weight_decay` 0 the decay stage keeps its (empty) state, so checkpoints keep their
    structure, but computes nothing: optax's `g + 0·p` is a full pass over every parameter per step."""
    decay = optax.masked(optax.add_decayed_weights(train_cfg.weight_decay), _decay_mask)
    if not train_cfg.weight_decay:
        decay = optax.GradientTransformation(decay.init, lambda updates, state, params=None: (updates, state))
    return optax.chain(
        optax.clip_by_global_norm(train_cfg.grad_clip),
        optax.chain(optax.scale_by_adam(b1=train_cfg.b1, b2=train_cfg.b2, eps=train_cfg.eps), decay,
                    optax.scale_by_learning_rate(lr_schedule(train_cfg, total_steps))))


def forward_len(T: int) -> int:
    """Positions the training pass runs for blocks of T tokens: T - 1 (the shifted inputs), or T where
    T - 1 is odd. cuDNN's fused attention trains only on even lengths (512-token blocks give 511 inputs,
    which it refuses, so `auto` fell back to XLA's attention); under causal attention the extra last
    position changes no other position's logits, and its own are dropped."""
    return T - 1 if (T - 1) % 2 == 0 else T


def next_token_loss(model_cfg: model_lib.ModelConfig, params, tokens_BxT, rng=None):
    """Mean cross-entropy of predicting tokens[1:] from tokens[:-1] (HF GPT-2's shift), the output layer a
    chunk of positions at a time (no float32 [B, T, V] logits)."""
    T = tokens_BxT.shape[1]
    h_BxTxC = model_lib.forward(model_cfg, params, tokens_BxT[:, :forward_len(T)], rng=rng, head=False)[:, :T - 1]
    logp_BxT, _ = output_layer.token_logprobs(model_cfg, params, h_BxTxC, tokens_BxT[:, 1:], entropy=False)
    return -logp_BxT.mean()


def global_mean(tree, how: str = "mean"):
    """Mean over the device axis. "mean": lax.pmean (an all-reduce; the sum's order depends on how devices
    are spread over hosts, so 2 hosts × 2 devices and 1 host × 4 differ in the last bits). "ordered": each
    device's copy in its own slot of a zero-filled [D, ...] buffer, all-reduced (every slot sums one value
    and zeros: exact in any order), then summed in device order: bit-identical for any split of the same
    devices over hosts, at the cost of D copies (for verification runs and small device counts)."""
    if how == "mean":
        return jax.lax.pmean(tree, AXIS)
    if how == "ordered":
        n, i = jax.lax.axis_size(AXIS), jax.lax.axis_index(AXIS)

        def ordered(x):
            slots = jnp.zeros((n,) + x.shape, x.dtype).at[i].set(x)
            return jax.lax.psum(slots, AXIS).sum(0) / n

        return jax.tree.map(ordered, tree)
    raise ValueError(f"unknown reduction {how!r}")


def mesh_of(devices) -> jax.sharding.Mesh:
    """The data-parallel mesh: `devices` (every process's, process by process) along one "devices" axis."""
    return jax.sharding.Mesh(np.asarray(devices), (AXIS,))


def batch_sharding(mesh: jax.sharding.Mesh) -> jax.sharding.NamedSharding:
    """A global batch [grad_accum, rows, T]: its rows split over the devices."""
    return jax.sharding.NamedSharding(mesh, P(None, AXIS))


def _per_device(tree):
    """`tree` (replicated) marked as varying over the devices. Inside shard_map the gradient with respect to
    a replicated input is summed over the devices by autodiff itself; taken with respect to this per-device
    view it stays each device's own, and `global_mean` alone reduces it (else the gradients would be the
    sum, D times the mean, and clipping and Adam's epsilon would see D times the gradient)."""
    cast = getattr(jax.lax, "pcast", None)
    if cast is not None:
        return jax.tree.map(lambda x: cast(x, AXIS, to="varying"), tree)
    return jax.lax.pvary(tree, AXIS)


def make_train_step(model_cfg: model_lib.ModelConfig, optimizer: optax.GradientTransformation,
                    schedule: optax.Schedule, seed: int, mesh: jax.sharding.Mesh, dropout: bool = True,
                    grad_reduce: str = "mean") -> Callable:
    """Returns the jitted step: (replicated state, tokens_AxNxT sharded by `batch_sharding`, step) →
    (state, metrics); the state is donated."""
    if grad_reduce not in ("mean", "ordered"):  # fail here, not inside the trace
        raise ValueError(f"train.grad_reduce={grad_reduce!r}: use 'mean' or 'ordered'.")

    def step_fn(state: TrainState, tokens_AxBxT, step):
        rng = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed, impl=DROPOUT_RNG), step),
                                 jax.lax.axis_index(AXIS))

        params_here = _per_device(state.params)

        def grad_fn(tokens_BxT, i):
            micro_rng = jax.random.fold_in(rng, i) if dropout else None
            return jax.value_and_grad(lambda p: next_token_loss(model_cfg, p, tokens_BxT, micro_rng))(params_here)

        def micro(carry, xs):
            loss_sum, grad_sum = carry
            loss, grads = grad_fn(*xs)
            return (loss_sum + loss, jax.tree.map(jnp.add, grad_sum, grads)), None

        A = tokens_AxBxT.shape[0]
        if A == 1:  # no accumulation: skip the loop and its zero-filled float32 gradient carry
            loss_sum, grad_sum = grad_fn(tokens_AxBxT[0], 0)
        else:
            zeros = jax.tree.map(jnp.zeros_like, params_here)  # per device, as the carry's sums are
            (loss_sum, grad_sum), _ = jax.lax.scan(micro, (_per_device(jnp.zeros(())), zeros),
                                                   (tokens_AxBxT, jnp.arange(A)))
        grads = global_mean(jax.tree.map(lambda g: g / A, grad_sum), grad_reduce)
        loss = global_mean(loss_sum / A, grad_reduce)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        grad_norm = optax.tree.norm(grads)
        # Whether the returned state may be checkpointed, read from two scalars rather than a reduction over
        # every parameter and moment: a finite loss and gradient norm give finite clipped gradients, hence
        # finite Adam moments and update, into a state that was itself checked when it was made.
        metrics = {"loss": loss, "grad_norm": grad_norm, "lr": schedule(step),
                   "state_finite": jnp.isfinite(loss) & jnp.isfinite(grad_norm)}
        return TrainState(params, opt_state), metrics

    sharded = jax.shard_map(step_fn, mesh=mesh, in_specs=(P(), P(None, AXIS), P()), out_specs=P())
    return jax.jit(sharded, donate_argnums=(0,))


def make_eval_step(model_cfg: model_lib.ModelConfig, mesh: jax.sharding.Mesh) -> Callable:
    """Jitted mean next-token loss over tokens_NxT sharded by rows over the mesh (every device holds as many)."""

    def eval_fn(params, tokens_BxT):
        return jax.lax.pmean(next_token_loss(model_cfg, params, tokens_BxT), AXIS)

    return jax.jit(jax.shard_map(eval_fn, mesh=mesh, in_specs=(P(), P(AXIS)), out_specs=P()))


def abstract_args(model_cfg: model_lib.ModelConfig, optimizer: optax.GradientTransformation,
                  mesh: jax.sharding.Mesh, grad_accum: int, rows: int, block_len: int) -> tuple:
    """The train step's arguments as shapes and shardings only (a replicated state, a global batch of
    `grad_accum` micro-batches of `rows` rows, the step): what its compiled plan is read from."""
    replicated = jax.sharding.NamedSharding(mesh, P())
    put = lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated)
    state = jax.eval_shape(lambda: (lambda p: TrainState(p, optimizer.init(p)))(
        model_lib.init_params(model_cfg, jax.random.key(0))))
    return (jax.tree.map(put, state),
            jax.ShapeDtypeStruct((grad_accum, rows, block_len), jnp.int32, sharding=batch_sharding(mesh)),
            jax.ShapeDtypeStruct((), jnp.int32, sharding=replicated))


def replicate(tree, mesh: jax.sharding.Mesh):
    """One copy of `tree` (host or device arrays, the same on every process) on each device of the mesh."""
    sharding = jax.sharding.NamedSharding(mesh, P())

    def put(x):
        x = np.asarray(x)  # a copy: the step donates the result, and the caller's arrays must survive
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    return jax.tree.map(put, tree)


def global_rows(local_NxT: np.ndarray, mesh: jax.sharding.Mesh, spec=P(AXIS)) -> jax.Array:
    """This process's rows of a global batch as one global array (rows split over the mesh's devices);
    each process passes its own, in process order."""
    return jax.make_array_from_process_local_data(jax.sharding.NamedSharding(mesh, spec), local_NxT)


def to_host(tree):
    """Host copy of a replicated tree. Reads one local buffer per leaf: a replicated global array of a
    multi-host mesh is not fully addressable, and indexing would dispatch one small program per leaf."""
    return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), tree)
