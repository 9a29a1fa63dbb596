"""The teacher rows of `python -m storyjax.bench`: stories graded per second, each teacher through the
client an interactive run uses, and the in-process JAX teacher beside transformers on the same weights.

- `rubric` / `openai`: `make_teacher` with configs/interactive.py's settings (an `openai` row times the
  server at `--teacher_url`, e.g. a llama.cpp server on the same GGUF).
- `jax` with real weights (`--teacher_weights=FILE.gguf|HF_FOLDER`): `JaxTeacher.grade_batch` (tokenizing,
  shared prefix, three digit positions) against transformers on the same weights doing the same work the
  fastest way it offers: the whole prompts as one left-padded batch (prefill, logits at the last position
  only), then the answer tokens through its KV cache, the next digit conditioned on the most likely one. Both read the argmax digits,
  so the row also reports how often they agree.
- `jax` with `--teacher_weights=random:SHAPE` (`llama3_8b`, `llama3_1b`, `tiny`): random weights written
  as a sharded Hugging Face folder, loaded as the teacher loads weights, and random token ids, for the GPU
  target (an 8B teacher, ~300-token shared prefix, ~110-token stories); the JAX side times its prefill,
  story pass and digit passes; transformers times prefill + two cached steps.

Every JAX teacher row records its load: `load_seconds`, `weights_bytes` (the placed parameters) and
`load_host_peak_bytes` (the most host memory the load added, tokenizer included; on CPU the placed
weights are host memory too), beside `story_pass_xla_bytes` (the device memory XLA plans for a story pass).
"""

from __future__ import annotations

import json
import os
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from storyjax.data.tales_generator import make_tale
from storyjax.profiling import HostPeak, planned_bytes
from storyjax.prompts import PAPER_PROMPT
from storyjax.teachers import config as teacher_defaults
from storyjax.teachers import jax_teacher, lm_passes, lm_weights, make_teacher
from storyjax.teachers.grader_settings import GraderSettings
from storyjax.teachers.prompt_templates import load_template
from storyjax.teachers.settings import parse as parse_grader

RANDOM_SHAPES = {  # transformers LlamaConfig fields
    "llama3_8b": dict(vocab_size=128_256, hidden_size=4096, intermediate_size=14_336, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=8, rope_theta=500_000.0, rms_norm_eps=1e-5,
                      max_position_embeddings=8192, tie_word_embeddings=False),
    "llama3_1b": dict(vocab_size=128_256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                      num_attention_heads=32, num_key_value_heads=8, rope_theta=500_000.0, rms_norm_eps=1e-5,
                      max_position_embeddings=8192, tie_word_embeddings=True),
    "tiny": dict(vocab_size=1024, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, rope_theta=10_000.0, rms_norm_eps=1e-5,
                 max_position_embeddings=1024, tie_word_embeddings=False),
}


def bench_stories(n: int, seed: int = 7) -> list:
    """`n` tales cut to the paper's story length (~70 words after the opening)."""
    return [PAPER_PROMPT + " " + " ".join(make_tale(seed, i).split()[:70]) for i in range(n)]


# The bench's teacher flags and the teacher settings they set: the keys an interactive run reads
# (--teacher_url is --config.teacher.openai.base_url there, and so on), defaults from the same place.
FLAG_KEYS = {"teacher_url": "openai.base_url", "teacher_model": "openai.model", "teacher_weights": "jax.weights",
             "teacher_batch": "jax.batch_size", "teacher_constrain": "openai.constrain",
             "teacher_temperature": "temperature"}


def teacher_config(name: str, flag_values: dict) -> GraderSettings:
    """The teacher section an interactive run would have with these bench flags set, parsed as it parses it."""
    cfg = teacher_defaults.defaults(name)
    for flag, value in flag_values.items():
        section, _, key = FLAG_KEYS[flag].rpartition(".")
        (cfg[section] if section else cfg)[key] = value
    return parse_grader(cfg, "teacher", weights=False)


def bench_client(cfg, stories: list) -> dict:
    """Stories/s of a teacher built as an interactive run builds it, after a warm-up batch of as many other
    stories (connections; compilation of the same shapes); plus its answers for agreement checks."""
    with tempfile.TemporaryDirectory() as workdir:
        t0 = time.perf_counter()
        with HostPeak() as peak:
            teacher = make_teacher(cfg, workdir)
        load_seconds = time.perf_counter() - t0
        try:
            warm = bench_stories(len(stories), seed=8)
            teacher.grade_batch([PAPER_PROMPT] * len(warm), warm)
            t0 = time.perf_counter()
            grades = teacher.grade_batch([PAPER_PROMPT] * len(stories), stories)
            seconds = time.perf_counter() - t0
        finally:
            teacher.close()
    scored = int(np.isfinite(grades.scores_Bx3).all(1).sum())
    row = {"teacher": teacher.name, "stories": len(stories), "scored": scored, "seconds": seconds,
           "stories_per_s": len(stories) / seconds, "answers": list(grades.answers)}
    if hasattr(teacher, "kernels"):
        row["kernels"] = teacher.kernels
    if hasattr(teacher, "params"):
        row.update(load_record(teacher.params, peak.bytes, load_seconds))
    return row


def load_record(params, peak_bytes, seconds: float) -> dict:
    """What loading a teacher cost: its placed weights' bytes, the host memory the load added at its peak
    and that as a multiple of the weights."""
    weights = int(sum(x.nbytes for x in jax.tree.leaves(params)))
    return {"load_seconds": seconds, "weights_bytes": weights, "load_host_peak_bytes": peak_bytes,
            "load_host_peak_vs_weights": None if peak_bytes is None else peak_bytes / weights}


def random_hf_folder(shape: dict, folder: str, dtype: str = "bfloat16") -> str:
    """A Llama checkpoint of random weights in Hugging Face's layout (config.json, one safetensors shard
    per layer and an index), as a real sharded checkpoint is read. The layers share one draw of random
    values: drawing an 8B model's would take minutes, and the values do not matter to speed or memory."""
    import ml_dtypes
    from safetensors.numpy import save_file
    os.makedirs(folder, exist_ok=True)
    np_dtype = {"bfloat16": ml_dtypes.bfloat16, "float32": np.float32}[dtype]
    rng = np.random.default_rng(0)
    n = lambda *s: (0.02 * rng.standard_normal(s, np.float32)).astype(np_dtype)
    D, F, V, L = shape["hidden_size"], shape["intermediate_size"], shape["vocab_size"], shape["num_hidden_layers"]
    H, K = shape["num_attention_heads"], shape["num_key_value_heads"]
    Dh = D // H
    layer = {"input_layernorm.weight": np.ones(D, np_dtype), "post_attention_layernorm.weight": np.ones(D, np_dtype),
             "self_attn.q_proj.weight": n(H * Dh, D), "self_attn.k_proj.weight": n(K * Dh, D),
             "self_attn.v_proj.weight": n(K * Dh, D), "self_attn.o_proj.weight": n(D, H * Dh),
             "mlp.gate_proj.weight": n(F, D), "mlp.up_proj.weight": n(F, D), "mlp.down_proj.weight": n(D, F)}
    shards = [{f"model.layers.{i}.{k}": w for k, w in layer.items()} for i in range(L)]
    shards.append({"model.embed_tokens.weight": n(V, D), "model.norm.weight": np.ones(D, np_dtype),
                   **({} if shape["tie_word_embeddings"] else {"lm_head.weight": n(V, D)})})
    weight_map = {}
    for i, tensors in enumerate(shards):
        name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(tensors, os.path.join(folder, name))
        weight_map.update({k: name for k in tensors})
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {}, "weight_map": weight_map}, f)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump({"model_type": "llama", "architectures": ["LlamaForCausalLM"], "torch_dtype": dtype, **shape}, f)
    return folder


def _cache(model, cache) -> dict:
    """The KV cache argument under this transformers version's name (`cache` from 5.x, else past_key_values)."""
    import inspect
    return {"cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values": cache}


def _cache_of(out):
    return out.cache if hasattr(out, "cache") else out.past_key_values


def bench_hf_grading(weights: str, stories: list, batch: int) -> dict:
    """transformers grading the same prompts as the JAX teacher: batched prefill of the whole prompts, then
    the answer's tokens through the KV cache; argmax digit at each grade."""
    import torch
    import transformers

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    folder, gguf = (os.path.dirname(weights), {"gguf_file": os.path.basename(weights)}) \
        if weights.endswith(".gguf") else (weights, {})
    tok = transformers.AutoTokenizer.from_pretrained(folder, **gguf)
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, **gguf).to(device).eval()
    fmt = jax_teacher.answer_format(tok)
    parts = jax_teacher.prompt_parts(tok, load_template(""), PAPER_PROMPT)
    bos = [tok.bos_token_id] if tok.bos_token_id is not None and tok.encode("a")[:1] == [tok.bos_token_id] else []
    prompts = [bos + tok.encode(parts.prefix + s + parts.tail, add_special_tokens=False) for s in stories]
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0

    def grade(rows):
        T = max(map(len, rows))
        ids = torch.tensor([[pad] * (T - len(r)) + r for r in rows], device=device)
        mask = torch.tensor([[0] * (T - len(r)) + [1] * len(r) for r in rows], device=device)
        answer = np.tile(np.asarray(fmt.ids), (len(rows), 1))
        digits, done, cache = [], 0, None
        with torch.no_grad():
            for k, at in enumerate(fmt.digit_at):
                if k:  # the answer tokens since the last digit, through the cache
                    step = torch.tensor(answer[:, done:at], device=device)
                    mask = torch.cat([mask, torch.ones_like(step)], 1)
                    out = model(input_ids=step, attention_mask=mask, use_cache=True, **_cache(model, cache))
                    done = at
                else:
                    out = model(input_ids=ids, attention_mask=mask, use_cache=True, logits_to_keep=1)
                cache = _cache_of(out)
                cand = out.logits[:, -1, list(fmt.candidates[k])].float().cpu().numpy()
                top = cand.argmax(1)
                answer[:, at] = np.asarray(fmt.candidates[k])[top]
                digits.append(top)
        return np.stack(digits, 1)

    grade(prompts[:batch])  # warm-up
    t0 = time.perf_counter()
    digits = np.concatenate([grade(prompts[i:i + batch]) for i in range(0, len(prompts), batch)])
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    return {"teacher": f"transformers ({device}, {str(dtype).split('.')[-1]})", "stories": len(stories),
            "seconds": seconds, "stories_per_s": len(stories) / seconds, "batch": batch,
            "mean_prompt_tokens": float(np.mean([len(p) for p in prompts])),
            "answers": [" ".join(map(str, row)) for row in digits]}


def random_jax_row(shape: dict, stories: int, prefix_len: int, story_len: int, batch: int, repeats: int) -> dict:
    """The JAX teacher's device work on random weights and ids: prefix once, stories in micro-batches of
    `batch` sharded over every local device, the two extra digit passes."""

    dtype = "float32" if jax.default_backend() == "cpu" else "bfloat16"
    V = shape["vocab_size"]
    mesh = lm_passes.teacher_mesh(0)  # every local accelerator (one CPU device on CPU), as the teacher's default
    rows = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    with tempfile.TemporaryDirectory() as folder:
        random_hf_folder(shape, folder)
        t0 = time.perf_counter()
        with HostPeak() as peak:
            cfg, params = lm_weights.load_hf_params(folder, dtype, lm_passes.placer(mesh))
        load = load_record(params, peak.bytes, time.perf_counter() - t0)
    rng = np.random.default_rng(0)
    padded_len = -(-prefix_len // lm_passes.PREFIX_BUCKET) * lm_passes.PREFIX_BUCKET  # as the teacher pads it
    prefix = jnp.asarray(rng.integers(0, V, (1, padded_len)), jnp.int32)
    P = jnp.int32(prefix_len)
    step = mesh.shape["data"]
    B = -(-batch // step) * step
    S = -(-story_len // jax_teacher.BUCKET) * jax_teacher.BUCKET
    toks = jax.device_put(jnp.asarray(rng.integers(0, V, (B, S)), jnp.int32), rows)
    valid = jax.device_put(jnp.arange(S)[None] < story_len - jnp.asarray(rng.integers(0, 10, (B, 1))), rows)
    answer = jax.device_put(jnp.zeros((B, 4), jnp.int32), rows)

    run = lm_passes.passes(jax.default_backend())  # what the teacher runs

    def grade_all():
        k, v = run.prefill(cfg, params, prefix)
        out = []
        for _ in range(-(-stories // B)):
            first, sk, sv = run.suffix(cfg, params, k, v, P, toks, valid)
            out += [first.argmax(-1)] + [run.extend(cfg, params, k, v, P, sk, sv, valid, answer, jnp.int32(e)
                                                    ).argmax(-1) for e in (2, 4)]
        return jax.block_until_ready(out)

    grade_all()  # compile
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        grade_all()
        times.append(time.perf_counter() - t0)
    seconds = float(np.median(times))
    compiled = run.suffix.lower(cfg, params, *run.prefill(cfg, params, prefix), P, toks, valid).compile()
    return {"teacher": f"jax random {dtype}", "kernels": lm_passes.resolve_cpu_kernels()
            if jax.default_backend() == "cpu" else jax.default_backend(), "stories": stories, "seconds": seconds,
            "stories_per_s": stories / seconds, "batch": B, "devices": step, "story_pass_xla_bytes":
            planned_bytes(compiled), "num_params": int(sum(x.size for x in jax.tree.leaves(params))), **load}


def _random_hf(shape: dict, stories: int, prefix_len: int, story_len: int, batch: int) -> dict:
    import torch
    import transformers
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    # built in its dtype on the device: a float32 8B model first would take 32 GB of GPU memory beside JAX's
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**shape)).eval()
    finally:
        torch.set_default_dtype(default)
    rng = np.random.default_rng(0)
    T = prefix_len + story_len
    ids = torch.tensor(rng.integers(0, shape["vocab_size"], (batch, T)), device=device)

    def grade_all():
        with torch.no_grad():
            for _ in range(-(-stories // batch)):
                out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
                for _ in range(2):
                    out = model(input_ids=out.logits[:, -1:].argmax(-1), use_cache=True, **_cache(model, _cache_of(out)))
        if device == "cuda":
            torch.cuda.synchronize()

    grade_all()
    t0 = time.perf_counter()
    grade_all()
    seconds = time.perf_counter() - t0
    return {"teacher": f"transformers random ({device}, {str(dtype).split('.')[-1]})", "stories": stories,
            "seconds": seconds, "stories_per_s": stories / seconds, "batch": batch}


def bench_teachers(names: list, flag_values: dict, n_stories: int, hf: bool, prefix_len: int = 300,
                   story_len: int = 110) -> dict:
    """Rows (and ratios of the JAX teacher against each peer) for the teachers named, set by the bench's
    teacher flags (`flag_values`, FLAG_KEYS)."""
    rows, ratios = {}, {}
    jax_cfg = teacher_config("jax", flag_values).jax
    weights, batch = jax_cfg.weights, jax_cfg.batch_size
    if weights.startswith("random:"):
        if weights[7:] not in RANDOM_SHAPES:
            raise ValueError(f"--teacher_weights={weights}: random shapes are {sorted(RANDOM_SHAPES)}.")
        shape = RANDOM_SHAPES[weights[7:]]
        rows["teacher_jax"] = random_jax_row(shape, n_stories, prefix_len, story_len, batch, repeats=3)
        if hf:
            rows["teacher_jax_hf"] = _random_hf(shape, n_stories, prefix_len, story_len, batch)
    else:
        stories = bench_stories(n_stories)
        for name in names:
            rows[f"teacher_{name}"] = bench_client(teacher_config(name, flag_values), stories)
        if "jax" in names and hf:
            rows["teacher_jax_hf"] = bench_hf_grading(weights, stories, batch)
            ours, theirs = rows["teacher_jax"]["answers"], rows["teacher_jax_hf"]["answers"]
            rows["teacher_jax_hf"]["argmax_agreement_with_jax"] = float(np.mean([a == b for a, b in zip(ours, theirs)]))
        if "jax" in names and "openai" in names:
            ours, theirs = rows["teacher_jax"]["answers"], rows["teacher_openai"]["answers"]
            rows["teacher_openai"]["answer_agreement_with_jax"] = float(np.mean([a == b for a, b in zip(ours, theirs)]))
    for peer in ("teacher_jax_hf", "teacher_openai"):
        if "teacher_jax" in rows and peer in rows:
            ratios[f"teacher_jax_vs_{peer[len('teacher_'):]}"] = (rows["teacher_jax"]["stories_per_s"]
                                                                   / rows[peer]["stories_per_s"])
    return {"rows": rows, "ratios": ratios}
