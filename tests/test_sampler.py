import jax
import jax.numpy as jnp
import numpy as np
import pytest

from storyjax import model as M
from storyjax import sampler as S

CFG = M.ModelConfig(vocab_size=97, num_layers=2, d_model=64, num_heads=4, max_len=48, dropout=0.0)
EOS, PAD = 2, 1


@pytest.fixture(scope="module")
def params():
    return M.init_params(CFG, jax.random.key(0))


def left_pad(prompts):
    P = max(map(len, prompts))
    toks = np.full((len(prompts), P), PAD, np.int32)
    valid = np.zeros((len(prompts), P), bool)
    for b, p in enumerate(prompts):
        toks[b, P - len(p):], valid[b, P - len(p):] = p, True
    return jnp.asarray(toks), jnp.asarray(valid)


def run(params, prompts, rng=0, temperature=1.0, top_k=0, top_p=1.0, n=12, eos=EOS):
    toks, valid = left_pad(prompts)
    return S.sample(CFG, params, toks, valid, jax.random.key(rng), jnp.float32(temperature), jnp.int32(top_k),
                    jnp.float32(top_p), max_new_tokens=n, eos_id=eos, pad_id=PAD)


@jax.jit
def _last_logits(params, toks_BxT, valid_BxT):
    """The plain forward over the whole sequence so far (jitted whole: op by op it took a minute)."""
    return M.forward(CFG, params, toks_BxT, valid_BxT=valid_BxT)[:, -1]


def naive(params, prompts, rng=0, temperature=1.0, top_k=0, top_p=1.0, n=12, eos=EOS):
    """Recomputes the whole sequence every step: no cache, no loop state."""
    toks, valid = map(np.asarray, left_pad(prompts))
    B = len(prompts)
    out, logps, mask = np.full((B, n), PAD), np.zeros((B, n)), np.zeros((B, n), bool)
    done = np.zeros(B, bool)
    for i in range(n):
        if done.all():
            break
        logits = _last_logits(params, jnp.asarray(toks), jnp.asarray(valid))
        tok, lp = S.choose(logits, jax.random.fold_in(jax.random.key(rng), i), temperature, top_k, top_p)
        tok, lp = np.asarray(tok), np.asarray(lp)
        live = ~done
        out[:, i] = np.where(live, tok, PAD)
        logps[:, i], mask[:, i] = np.where(live, lp, 0.0), live
        done |= out[:, i] == eos
        toks = np.concatenate([toks, out[:, i:i + 1]], 1)
        valid = np.concatenate([valid, live[:, None]], 1)
    return out, mask, logps


PROMPTS = [[5, 6, 7, 8, 9, 10], [11, 12, 13], [20, 21, 22, 23]]


@pytest.mark.parametrize("settings", [dict(), dict(temperature=0.7, top_k=5), dict(top_p=0.8, rng=3)])
def test_cached_loop_matches_naive_full_recompute(params, settings):
    got = run(params, PROMPTS, **settings)
    want_tokens, want_mask, want_logps = naive(params, PROMPTS, **settings)
    np.testing.assert_array_equal(got.tokens_BxN, want_tokens)
    np.testing.assert_array_equal(got.mask_BxN, want_mask)
    np.testing.assert_allclose(got.logprobs_BxN, want_logps, atol=1e-4)


def test_rows_stop_at_end_of_text(params):
    greedy = run(params, PROMPTS, top_k=1)
    row_tokens = np.asarray(greedy.tokens_BxN[1])
    eos = int(row_tokens[3])  # pretend this greedy token of row 1 ends the story
    end = int(np.argmax(row_tokens == eos))  # its first occurrence
    out = run(params, PROMPTS, top_k=1, eos=eos)
    row = np.asarray(out.mask_BxN[1])
    assert row[:end + 1].all() and not row[end + 1:].any()
    assert (np.asarray(out.tokens_BxN[1, end + 1:]) == PAD).all()
    np.testing.assert_array_equal(out.tokens_BxN[1, :end + 1], row_tokens[:end + 1])
    assert float(np.asarray(out.logprobs_BxN[1, end + 1:]).sum()) == 0.0


def test_left_padding_does_not_change_a_rows_story(params):
    together = run(params, PROMPTS, top_k=1)
    for b, p in enumerate(PROMPTS):
        alone = run(params, [p], top_k=1)
        np.testing.assert_array_equal(together.tokens_BxN[b], alone.tokens_BxN[0])
        np.testing.assert_allclose(together.logprobs_BxN[b], alone.logprobs_BxN[0], atol=1e-5)


def test_top_k_one_is_greedy_and_filters_leave_valid_distributions(params):
    out = run(params, PROMPTS, top_k=1, n=1)
    toks, valid = left_pad(PROMPTS)
    first = np.argmax(np.asarray(M.forward(CFG, params, toks, valid_BxT=valid)[:, -1]), -1)
    np.testing.assert_array_equal(out.tokens_BxN[:, 0], first)
    logits = jax.random.normal(jax.random.key(9), (4, 50))
    kept = np.isfinite(np.asarray(S.filter_logits(logits, 1.0, 7, 1.0))).sum(-1)
    assert (kept == 7).all()
    nucleus = np.asarray(S.filter_logits(logits, 1.0, 0, 0.5))
    probs = np.asarray(jax.nn.softmax(logits))
    for b in range(4):
        order = np.argsort(-probs[b])
        n_kept = np.isfinite(nucleus[b]).sum()
        assert probs[b, order[:n_kept - 1]].sum() < 0.5 <= probs[b, order[:n_kept]].sum()


def test_changing_settings_prompts_and_rng_never_recompiles(params):
    """Values never recompile; switching the top-k/top-p filters on compiles their variant once."""
    run(params, PROMPTS)
    run(params, PROMPTS, top_k=2)
    size = S._sample._cache_size()
    run(params, [[30, 31, 32, 33, 34, 35], [7], [8, 9]], rng=5, temperature=0.5, top_k=3, top_p=0.9)
    run(params, PROMPTS, rng=11, temperature=1.3)
    run(params, PROMPTS, rng=12, top_p=0.5)
    assert S._sample._cache_size() == size


def test_settings_traced_by_an_outer_jit_sample_the_same(params):
    """Under an outer jit the filters' on/off can't be read on the host: the always-right path runs."""
    toks, valid = left_pad(PROMPTS)
    outer = jax.jit(lambda k, p: S.sample(CFG, params, toks, valid, jax.random.key(4), jnp.float32(0.8), k, p,
                                          max_new_tokens=12, eos_id=EOS, pad_id=PAD))
    for top_k, top_p in ((0, 1.0), (3, 1.0), (0, 0.7)):
        traced = outer(jnp.int32(top_k), jnp.float32(top_p))
        host = run(params, PROMPTS, rng=4, temperature=0.8, top_k=top_k, top_p=top_p)
        np.testing.assert_array_equal(traced.tokens_BxN, host.tokens_BxN)
        np.testing.assert_array_equal(traced.mask_BxN, host.mask_BxN)
        # Another compilation (parameters folded in as constants) may round differently in the last bit.
        np.testing.assert_allclose(traced.logprobs_BxN, host.logprobs_BxN, atol=1e-6)


def test_prompt_plus_new_tokens_must_fit_the_context():
    S.check_lengths(CFG, 16, 32)
    with pytest.raises(ValueError, match="lower max_new_tokens to 32"):
        S.check_lengths(CFG, 16, 33)


def cache_sized_moves(cfg, params, B=8, P=12, N=20, filtered=False) -> list[str]:
    """Instructions of the compiled sampler that copy, transpose or convert a whole KV-cache buffer."""
    import re
    toks, valid = jnp.ones((B, P), jnp.int32), jnp.ones((B, P), bool)
    hlo = S._sample.lower(cfg, params, toks, valid, jax.random.key(0), jnp.float32(1), jnp.int32(0), jnp.float32(1),
                          max_new_tokens=N, eos_id=EOS, pad_id=PAD, filtered=filtered).compile().as_text()
    shape = f"[{B},{cfg.num_heads},{P + N},{cfg.head_dim}]"
    return [line.strip() for line in hlo.splitlines()
            if shape in line and re.search(r"= \S+ (copy|transpose|convert)\(", line)]


@pytest.mark.parametrize("filtered", [False, True])
def test_compiled_decode_never_copies_or_transposes_the_kv_cache(params, filtered):
    """The cache is updated in place: XLA's optimized program (float32, CPU) holds no cache-sized copy,
    transpose or convert, in the loop or out of it. A layout change that made the loop move the whole cache
    every token would show up here, on CPU, before any GPU run. (bfloat16 on CPU is not checked: XLA:CPU
    upcasts bf16 dots to float32, converting the cache each step, which GPUs do not.)"""
    assert cache_sized_moves(CFG, params, filtered=filtered) == []


def test_n_tokens_take_one_prefill_and_n_minus_1_decode_passes(monkeypatch):
    """The last story token is sampled from the logits the pass before it left: running it through the
    model would be a wasted pass (the sampler ran 96 for 90 tokens when it padded to whole checks)."""
    calls = []
    real = M.decode

    def counted(*args, **kwargs):
        jax.debug.callback(lambda: calls.append(1))
        return real(*args, **kwargs)

    monkeypatch.setattr(S.model_lib, "decode", counted)
    cfg = M.ModelConfig(vocab_size=89, num_layers=1, d_model=32, num_heads=2, max_len=48, dropout=0.0)  # compiled here only
    p = M.init_params(cfg, jax.random.key(0))
    toks, valid = left_pad(PROMPTS)
    for n in (1, 9, 12):  # no decode pass; a whole check and one more; a check and a remainder
        calls.clear()
        out = S.sample(cfg, p, toks, valid, jax.random.key(n), jnp.float32(1.0), jnp.int32(0), jnp.float32(1.0),
                       max_new_tokens=n, eos_id=cfg.vocab_size + 7, pad_id=PAD)  # an end-of-text never drawn
        jax.block_until_ready(out)
        jax.effects_barrier()
        assert bool(np.asarray(out.mask_BxN).all())
        assert len(calls) == n, (n, len(calls))  # 1 prefill + (n - 1) decode passes
