import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from storyjax import model as M


def small_cfg(**kw):
    return M.ModelConfig(vocab_size=300, num_layers=2, d_model=64, num_heads=4, max_len=32, dropout=0.0, **kw)


def test_gpt2_small_has_the_papers_parameter_count():
    cfg = M.ModelConfig(vocab_size=16_000, **M.PRESETS["gpt2_small"])
    shapes = jax.eval_shape(lambda: M.init_params(cfg, jax.random.key(0)))
    assert M.count_params(shapes) == 97_737_216
    # Tied embeddings: no separate output matrix.
    assert "lm_head" not in shapes and shapes["wte"]["embedding"].shape == (16_000, 768)


def test_changing_a_future_token_leaves_past_logits_unchanged():
    cfg = small_cfg()
    params = M.init_params(cfg, jax.random.key(0))
    tokens = jax.random.randint(jax.random.key(1), (2, 16), 0, cfg.vocab_size)
    changed = tokens.at[:, 10].set((tokens[:, 10] + 7) % cfg.vocab_size)
    a, b = M.forward(cfg, params, tokens), M.forward(cfg, params, changed)
    np.testing.assert_array_equal(a[:, :10], b[:, :10])
    assert not np.allclose(a[:, 10:], b[:, 10:])


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_kv_cache_decoding_equals_full_forward(dtype):
    cfg = small_cfg(compute_dtype=dtype)
    params = M.init_params(cfg, jax.random.key(0))
    tokens = jax.random.randint(jax.random.key(2), (3, 20), 0, cfg.vocab_size)
    full = M.forward(cfg, params, tokens)
    cache = M.init_cache(cfg, 3, 24)
    positions = jnp.broadcast_to(jnp.arange(20), (3, 20))
    logits, cache = M.decode(cfg, params, tokens[:, :7], positions[:, :7], jnp.ones((3, 7), bool), cache)
    steps = [logits]
    for t in range(7, 20):
        logits, cache = M.decode(cfg, params, tokens[:, t:t + 1], positions[:, t:t + 1], jnp.ones((3, 1), bool),
                                 cache)
        steps.append(logits)
    tol = 1e-5 if dtype == "float32" else 5e-2
    np.testing.assert_allclose(jnp.concatenate(steps, 1), full, atol=tol, rtol=tol)
    assert int(cache.index) == 20


def test_left_padded_rows_match_unpadded_ones_in_cache_and_full_pass():
    cfg = small_cfg()
    params = M.init_params(cfg, jax.random.key(0))
    short = jax.random.randint(jax.random.key(3), (1, 5), 4, cfg.vocab_size)
    pad = 3
    tokens = jnp.concatenate([jnp.zeros((1, pad), jnp.int32), short], 1)
    valid = jnp.arange(pad + 5)[None] >= pad
    ref = M.forward(cfg, params, short)
    np.testing.assert_allclose(M.forward(cfg, params, tokens, valid_BxT=valid)[:, pad:], ref, atol=1e-5)
    positions = jnp.maximum(jnp.cumsum(valid, 1) - 1, 0)
    logits, _ = M.decode(cfg, params, tokens, positions, valid, M.init_cache(cfg, 1, 16))
    np.testing.assert_allclose(logits[:, pad:], ref, atol=1e-5)


def test_inference_params_change_nothing_but_the_dense_weights_dtype():
    cfg = small_cfg(compute_dtype="bfloat16")
    params = M.init_params(cfg, jax.random.key(0))
    cast = M.inference_params(cfg, params)
    assert cast["h_0"]["attn"]["c_attn"]["kernel"].dtype == cast["h_1"]["mlp"]["c_fc"]["bias"].dtype == jnp.bfloat16
    assert cast["wte"]["embedding"].dtype == cast["h_0"]["ln_1"]["scale"].dtype == jnp.float32
    tokens = jax.random.randint(jax.random.key(7), (2, 12), 0, cfg.vocab_size)
    np.testing.assert_array_equal(M.forward(cfg, cast, tokens), M.forward(cfg, params, tokens))


def test_bf16_compute_keeps_float32_params_and_tracks_float32_logits():
    cfg32, cfg16 = small_cfg(), small_cfg(compute_dtype="bfloat16")
    params = M.init_params(cfg16, jax.random.key(0))
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(params))
    tokens = jax.random.randint(jax.random.key(4), (2, 12), 0, cfg32.vocab_size)
    a, b = M.forward(cfg32, params, tokens), M.forward(cfg16, params, tokens)
    assert b.dtype == jnp.float32
    np.testing.assert_allclose(a, b, atol=5e-2)


def test_bad_shapes_are_refused_with_the_fix():
    with pytest.raises(ValueError, match="divisible by model.num_heads"):
        M.ModelConfig(d_model=100, num_heads=3).validate()
    cfg = small_cfg()
    params = M.init_params(cfg, jax.random.key(0))
    with pytest.raises(ValueError, match="exceeds the model context"):
        M.forward(cfg, params, jnp.zeros((1, 40), jnp.int32))


@pytest.mark.parametrize("dtype,tol", [("float32", 1e-5), ("bfloat16", 5e-2)])
def test_fused_attention_branch_equals_the_xla_path(monkeypatch, dtype, tol):
    """The cuDNN branch (forced here, run through jax's xla implementation since CPUs have no cuDNN) feeds
    jax.nn.dot_product_attention our [B,T,H,D] heads and scaling: it must give the einsum path's logits."""
    cfg = small_cfg(attention="xla", compute_dtype=dtype)
    params = M.init_params(cfg, jax.random.key(0))
    tokens = jax.random.randint(jax.random.key(5), (2, 16), 0, cfg.vocab_size)
    ref = M.forward(cfg, params, tokens)
    calls = []
    real = jax.nn.dot_product_attention

    def through_xla(q, k, v, *, is_causal, implementation):
        calls.append(implementation)
        return real(q, k, v, is_causal=is_causal, implementation="xla")

    monkeypatch.setattr(jax.nn, "dot_product_attention", through_xla)
    monkeypatch.setattr(M, "use_cudnn_attention", lambda *a: True)
    fused = M.forward(small_cfg(compute_dtype=dtype), params, tokens)
    assert calls == ["cudnn"] * cfg.num_layers
    np.testing.assert_allclose(fused, ref, atol=tol, rtol=tol)


def test_auto_attention_falls_back_when_cudnn_refuses(monkeypatch):
    """The probe runs on a "GPU" whose cuDNN attention cannot compile (this CPU): auto must choose xla."""
    M.cudnn_attention_compiles.cache_clear()
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    try:
        assert not M.cudnn_attention_compiles(16, 16)
        assert not M.use_cudnn_attention(small_cfg(compute_dtype="bfloat16"), 16, True)
    finally:
        M.cudnn_attention_compiles.cache_clear()


def test_attention_choice():
    assert not M.use_cudnn_attention(small_cfg(compute_dtype="bfloat16"), 16, True)  # auto on CPU: xla
    assert not M.cudnn_attention_compiles(16, 16)
    assert M.use_cudnn_attention(small_cfg(attention="cudnn", compute_dtype="bfloat16"), 16, True)
    with pytest.raises(ValueError, match="needs model.compute_dtype='bfloat16'"):
        small_cfg(attention="cudnn").validate()
    # Attention dropout keeps the einsum path, and insisting on cuDNN with dropout is refused with the fix.
    drop = dataclasses.replace(small_cfg(), dropout=0.1)
    assert not M.use_cudnn_attention(drop, 16, deterministic=False)
    with pytest.raises(ValueError, match="set model.dropout=0"):
        dataclasses.replace(drop, attention="cudnn", compute_dtype="bfloat16").validate()
    with pytest.raises(ValueError, match="use 'auto', 'xla' or 'cudnn'"):
        small_cfg(attention="flash").validate()
    # Run-time choices are not part of the architecture a checkpoint records.
    assert set(small_cfg().shape_dict()) == {"vocab_size", "num_layers", "d_model", "num_heads", "max_len",
                                             "mlp_ratio", "init_std", "layer_norm_eps"}


def test_bf16_gradients_track_float32_ones():
    """bf16 compute (bf16 matmuls with float32 accumulation, the output layer included) must keep the
    training signal: gradients close to the float32 model's, in direction and size."""
    from storyjax import pretrain_step
    cfg32, cfg16 = small_cfg(), small_cfg(compute_dtype="bfloat16")
    params = M.init_params(cfg32, jax.random.key(0))
    tokens = jax.random.randint(jax.random.key(6), (4, 24), 0, cfg32.vocab_size)
    g32, g16 = (jax.grad(lambda p, c=c: pretrain_step.next_token_loss(c, p, tokens))(params) for c in (cfg32, cfg16))
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(g16))
    a, b = (jnp.concatenate([x.ravel() for x in jax.tree.leaves(g)]) for g in (g32, g16))
    cosine = float(a @ b / jnp.linalg.norm(a) / jnp.linalg.norm(b))
    assert cosine > 0.99, cosine
    assert abs(float(jnp.linalg.norm(b) / jnp.linalg.norm(a)) - 1) < 0.05
