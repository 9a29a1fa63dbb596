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
