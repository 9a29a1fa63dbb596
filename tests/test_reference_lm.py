"""A reference language model as an instrument: per-token log-likelihood of a continuation given its opening,
matched-length comparisons, the sentence-order test, and the grading job's likelihood mode."""

import json
import random

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from storyjax import adversarial as A
from storyjax.teachers import config as teacher_config
from storyjax.teachers import lm, make_teacher, reference_lm
from storyjax.teachers import rubric as R
from test_jax_teacher import smollm2_path
from test_main import run_main, summary


@pytest.fixture(scope="module")
def smollm2():
    return make_teacher(teacher_config.configured("jax", weights=smollm2_path(), grading="expected", batch_size=8,
                                                  compute_dtype="float32"))


@pytest.fixture(scope="module")
def persuasion(austen_dir):
    prompts, stories = A.stories("real", A.passages([(austen_dir / "persuasion.txt").read_text()], 12))
    return [(p, reference_lm.continuation(p, s)) for p, s in zip(prompts, stories)]


@pytest.mark.slow
def test_continuation_logprobs_match_a_plain_forward_and_do_not_depend_on_the_batch(smollm2, persuasion):
    prompts, texts = zip(*persuasion[:5])
    batched = reference_lm.token_logprobs(smollm2, list(prompts), list(texts))
    for prompt, text, logp in zip(prompts, texts, batched):
        alone = reference_lm.token_logprobs(smollm2, [prompt], [text])[0]
        np.testing.assert_allclose(logp, alone, atol=2e-5)
        head = smollm2.tok.encode(prompt, add_special_tokens=False)
        ids = head + smollm2.tok.encode(text, add_special_tokens=False)
        logits = lm.full_logits(smollm2.lm_cfg, smollm2.params, jnp.asarray([ids]), jnp.ones((1, len(ids)), bool))
        ref = np.asarray(jax.nn.log_softmax(logits[0, :-1], -1))[np.arange(len(ids) - 1), ids[1:]]
        assert len(logp) == len(ids) - len(head)
        np.testing.assert_allclose(logp, ref[len(head) - 1:], atol=2e-4)


@pytest.mark.slow
def test_real_prose_is_likelier_than_its_shuffles_and_far_likelier_than_salad(smollm2, persuasion):
    """On Persuasion passages SmolLM2 reads the told order as likelier than a shuffle of the same sentences
    (paired, most passages) and word salad as far less likely."""
    prompts = [p for p, _ in persuasion]
    told = [t for _, t in persuasion]
    real = [reference_lm.nll_per_token(lp) for lp in reference_lm.token_logprobs(smollm2, prompts, told)]
    shuffles = [reference_lm.shuffled(t, i) for i, (_, t) in enumerate(persuasion)]
    shuffled = [reference_lm.nll_per_token(lp) for lp in reference_lm.token_logprobs(smollm2, prompts, shuffles)]
    salads = [" " + A.word_salad(t, random.Random(i)) for i, (_, t) in enumerate(persuasion)]
    salad = [reference_lm.nll_per_token(lp) for lp in reference_lm.token_logprobs(smollm2, prompts, salads)]
    margin = np.asarray(shuffled) - np.asarray(real)
    assert margin.mean() > 0.05 and (margin > 0).mean() >= 0.75, margin
    assert np.mean(salad) > np.mean(real) + 1.5, (np.mean(real), np.mean(salad))


def test_matched_length_compares_the_same_number_of_tokens_and_counts_short_pairs_apart():
    before = [np.log(np.full(10, 0.5)), np.log(np.full(3, 0.5)), np.log(np.r_[np.full(5, 0.5), np.full(5, 0.01)])]
    after = [np.log(np.full(6, 0.25)), np.log(np.full(9, 0.25)), np.log(np.full(20, 0.5))]
    m = reference_lm.matched_nll(before, after, cap=8)
    np.testing.assert_array_equal(m.tokens_N, [6, 3, 8])
    assert m.too_short == 1 and np.isnan(m.before_N[1]) and np.isnan(m.after_N[1])
    np.testing.assert_allclose(m.before_N[[0, 2]], [np.log(2), -(5 * np.log(0.5) + 3 * np.log(0.01)) / 8])
    np.testing.assert_allclose(m.after_N[[0, 2]], [np.log(4), np.log(2)])


def test_shuffled_reorders_sentences_and_leaves_a_single_sentence_alone():
    text = " Ada found a key. She opened the door. A garden lay beyond it."
    out = reference_lm.shuffled(text, 0)
    assert out != text and out.startswith(" ")
    assert sorted(R.sentences(out.strip())) == sorted(R.sentences(text.strip()))
    assert reference_lm.shuffled(" Only one sentence here.", 0) is None
    assert reference_lm.shuffled(text, 3) == reference_lm.shuffled(text, 3)


@pytest.mark.slow
def test_the_grading_jobs_likelihood_mode_scores_any_story_file(tmp_path, persuasion):
    stories = tmp_path / "stories.jsonl"
    stories.write_text("".join(json.dumps({"prompt": p, "story": p + t}) + "\n" for p, t in persuasion[:4])
                       + json.dumps({"prompt": "Once upon a time,", "story": "Once upon a time,"}) + "\n")
    args = ["--config=configs/grade.py", f"--config.stories={stories}", "--config.mode=likelihood",
            "--config.teacher.name=jax", f"--config.teacher.jax.weights={smollm2_path()}", "--config.batch=2",
            "--config.progress_bar=False"]
    proc = run_main(args, tmp_path / "lik")
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in open(tmp_path / "lik" / "likelihood.jsonl")]
    assert [x["index"] for x in lines] == [0, 1, 2, 3, 4]
    assert all(x["tokens"] > 20 and 0 < x["nll_per_token"] < 10 for x in lines[:4])
    assert lines[4] == {"index": 4, "nll_per_token": None, "tokens": 0, "shuffled_nll_per_token": None}
    s = summary(tmp_path / "lik")
    assert s["mode"] == "likelihood" and s["stories"] == 5 and s["empty"] == 1 and s["nll_per_token"]["n"] == 4
    assert "nats per token" in proc.stdout
    refused = run_main(args[:3] + ["--config.progress_bar=False"], tmp_path / "no")
    assert refused.returncode == 2 and "mode=likelihood reads a language model" in refused.stderr
