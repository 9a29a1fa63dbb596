import jax
import numpy as np
import pytest

from storyjax import model as M
from storyjax import pretrain_step as P
from storyjax.pretrain_settings import TrainSettings

TRAIN = TrainSettings(lr=1e-3, warmup_frac=0.1, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.01,
                      grad_clip=1.0)
CFG = M.ModelConfig(vocab_size=256, num_layers=2, d_model=64, num_heads=4, max_len=32, dropout=0.0)


def _setup(devices):
    opt = P.make_optimizer(TRAIN, 100)
    params = M.init_params(CFG, jax.random.key(0))
    state = P.TrainState(params, opt.init(params))
    mesh = P.mesh_of(devices)
    step = P.make_train_step(CFG, opt, P.lr_schedule(TRAIN, 100), seed=0, mesh=mesh, dropout=False)
    return P.replicate(state, mesh), step, mesh


def _run(devices, tokens_NxT, accum=1, steps=3):
    state, step, mesh = _setup(devices)
    batch = P.global_rows(tokens_NxT.reshape(accum, -1, tokens_NxT.shape[-1]), mesh, P.P(None, P.AXIS))
    for k in range(steps):
        state, metrics = step(state, batch, P.replicate(np.int32(k), mesh))
    return P.to_host(state.params), float(P.to_host(metrics["loss"]))


def test_data_parallel_step_on_8_devices_equals_one_device_with_the_whole_batch():
    assert jax.local_device_count() == 8
    tokens = np.asarray(jax.random.randint(jax.random.key(1), (16, 32), 0, CFG.vocab_size))
    p8, loss8 = _run(jax.local_devices(), tokens)
    p1, loss1 = _run(jax.local_devices()[:1], tokens)
    assert abs(loss8 - loss1) < 1e-5
    for a, b in zip(jax.tree.leaves(p8), jax.tree.leaves(p1)):
        np.testing.assert_allclose(a, b, atol=2e-6, rtol=1e-5)


def test_gradient_accumulation_equals_the_full_batch_step():
    tokens = np.asarray(jax.random.randint(jax.random.key(2), (16, 32), 0, CFG.vocab_size))
    devices = jax.local_devices()[:2]
    p_full, _ = _run(devices, tokens, accum=1)
    p_acc, _ = _run(devices, tokens, accum=4)
    for a, b in zip(jax.tree.leaves(p_full), jax.tree.leaves(p_acc)):
        np.testing.assert_allclose(a, b, atol=2e-6, rtol=1e-5)


def test_schedule_warms_up_then_decays_linearly_to_zero():
    sched = P.lr_schedule(TRAIN, 100)
    assert float(sched(0)) == 0.0
    assert float(sched(10)) == pytest.approx(1e-3, abs=1e-9)
    assert float(sched(55)) == pytest.approx(0.5e-3, abs=1e-9)
    assert float(sched(100)) == pytest.approx(0.0, abs=1e-9)


def test_weight_decay_spares_biases_and_layer_norms():
    params = M.init_params(CFG, jax.random.key(0))
    mask = P._decay_mask(params)
    assert mask["h_0"]["attn"]["c_attn"]["kernel"] and mask["wte"]["embedding"]
    assert not mask["h_0"]["attn"]["c_attn"]["bias"] and not mask["ln_f"]["scale"]
