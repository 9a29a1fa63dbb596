import jax
import jax.numpy as jnp
import numpy as np
import pytest

from storyjax import bench_compiled, output_layer
from storyjax import model as M

CFG = M.ModelConfig(vocab_size=211, num_layers=2, d_model=32, num_heads=2, max_len=32, dropout=0.0)


def _full(params, tokens_BxT):
    """Today's reference: the whole [B, T, V] logits, then log-softmax."""
    logits = M.forward(CFG, params, tokens_BxT[:, :-1])
    logp_all = jax.nn.log_softmax(logits)
    logp = jnp.take_along_axis(logp_all, tokens_BxT[:, 1:, None], axis=-1)[..., 0]
    return logp, -(jnp.exp(logp_all) * logp_all).sum(-1)


def _chunked(params, tokens_BxT, rows):
    h = M.forward(CFG, params, tokens_BxT[:, :-1], head=False)
    return output_layer.token_logprobs(CFG, params, h, tokens_BxT[:, 1:], True, chunk_rows=rows)


# a ragged last chunk; whole chunks and a single chunk in the slow pass
@pytest.mark.parametrize("rows", [7, pytest.param(64, marks=pytest.mark.slow), pytest.param(10_000, marks=pytest.mark.slow)])
def test_chunked_logprobs_entropy_and_gradients_equal_the_whole_logits(rows):
    params = M.init_params(CFG, jax.random.key(0))
    tokens = jax.random.randint(jax.random.key(1), (4, 17), 0, CFG.vocab_size)
    (lp, ent), (lp_ref, ent_ref) = _chunked(params, tokens, rows), _full(params, tokens)
    np.testing.assert_allclose(lp, lp_ref, atol=1e-5)
    np.testing.assert_allclose(ent, ent_ref, atol=1e-5)
    weights = jax.random.normal(jax.random.key(2), lp.shape)  # any mixture of both, as REINFORCE's loss is

    def loss(p, fn):
        a, b = fn(p)
        return (weights * a).sum() + 0.1 * b.sum()

    g = jax.grad(loss)(params, lambda p: _chunked(p, tokens, rows))
    g_ref = jax.grad(loss)(params, lambda p: _full(p, tokens))
    for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g_ref)):
        np.testing.assert_allclose(a, b, atol=1e-3 * float(jnp.abs(b).max()) + 1e-7)


def test_the_compiled_train_step_holds_no_float32_logits_of_the_whole_batch(monkeypatch):
    shape = dict(vocab=512, preset="tiny", seq=64, batches=[8], steps=2, dtype="float32", stories=8, prompt_len=8,
                 new_tokens=12)
    whole = bench_compiled.pretrain_row(shape, 8)["f32_logits"]
    monkeypatch.setattr(output_layer, "CHUNK_ROWS", 128)  # 8 × 63 positions: four chunks
    chunked = bench_compiled.pretrain_row(shape, 8)
    assert whole >= 1 and chunked["f32_logits"] == 0 and chunked["param_copies"] == 0
