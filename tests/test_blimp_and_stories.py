import jax
import jax.numpy as jnp
import numpy as np

from storyjax import blimp
from storyjax import model as M
from storyjax import diversity
from storyjax import tokenizer as T
from storyjax.stats import mean_ci


def test_padded_batched_scores_equal_one_sequence_at_a_time(austen_dir):
    tok = T.from_bytes(T.train([(austen_dir / "persuasion.txt").read_text()], 600))
    cfg = M.ModelConfig(vocab_size=tok.vocab_size, num_layers=2, d_model=64, num_heads=4, max_len=64, dropout=0.0)
    params = M.init_params(cfg, jax.random.key(0))
    texts = ["Anne was sorry.", "The sisters walked to Uppercross in the rain, talking of Captain Wentworth.", "No."]
    got = blimp.score_texts(cfg, params, tok, texts)
    for text, score in zip(texts, got):
        ids = jnp.asarray([[tok.eos_id] + tok.encode([text])[0]])
        logp = jax.nn.log_softmax(M.forward(cfg, params, ids[:, :-1]))
        want = float(jnp.take_along_axis(logp, ids[:, 1:, None], -1).sum())
        assert abs(score - want) < 1e-3 * max(1.0, abs(want))
    assert M.sequence_logprob._cache_size() <= 2  # one bucket shape per call size, no recompiles per text


def test_validation_blocks_and_minimal_pairs_are_scored_by_one_path():
    """evaluate's perplexity blocks and BLiMP's texts both go through likelihood.sequence_scores: a block's
    score there equals its log-likelihood computed whole; lengths bucket up to the model's context."""
    from storyjax import evaluate, likelihood
    cfg = M.ModelConfig(vocab_size=97, num_layers=2, d_model=64, num_heads=4, max_len=48, dropout=0.0)
    params = M.init_params(cfg, jax.random.key(1))
    blocks = np.random.default_rng(0).integers(0, 97, (3, 48)).astype(np.int32)
    logp = jax.nn.log_softmax(M.forward(cfg, params, jnp.asarray(blocks[:, :-1])))
    want = float(jnp.take_along_axis(logp, jnp.asarray(blocks[:, 1:, None]), -1).sum())
    assert abs(evaluate.score_blocks(cfg, params, blocks) - want) < 1e-4 * abs(want)
    assert [likelihood.bucket(n, 48) for n in (5, 17, 40, 48)] == [16, 32, 48, 48]
    try:
        likelihood.bucket(49, 48)
    except ValueError as e:
        assert "49 tokens does not fit the model context 48" in str(e)
    else:
        raise AssertionError("a text longer than the context was scored")


def test_minimal_pair_reader_names_a_bad_line(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text('{"sentence_good": "A cat sleeps.", "sentence_bad": "A cat sleep."}\n{"good": "x"}\n')
    try:
        blimp.read_minimal_pairs(str(f))
    except ValueError as e:
        assert "p.jsonl:2" in str(e)
    else:
        raise AssertionError("a line without the BLiMP fields was accepted")
    f.write_text('{"sentence_good": "A cat sleeps.", "sentence_bad": "A cat sleep."}\n\n')
    assert blimp.read_minimal_pairs(str(f)) == (["A cat sleeps."], ["A cat sleep."])


def test_story_statistics_against_hand_counts():
    assert diversity.distinct_n(["a b a b", "a c"], 1) == 3 / 6
    assert diversity.distinct_n(["a b a b"], 2) == 2 / 3
    assert diversity.repetition_rate("the cat sat the cat sat") == 1 - 3 / 4
    ci = mean_ci(np.asarray([1.0, 2.0, 3.0, 4.0]))
    assert ci["mean"] == 2.5 and abs(ci["ci95"] - 1.96 * np.std([1, 2, 3, 4], ddof=1) / 2) < 1e-12
