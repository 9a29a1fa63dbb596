"""`python -m storyjax.bench [--preset=tiny|gpt2_small] [--out=FILE.json]`: storyjax beside HF, same run.

Rows: pretraining tokens/s, MFU and peak memory of storyjax's pmapped train step and of Hugging Face's
GPT2LMHeadModel + torch AdamW (eager, and torch.compile on GPU) at the same shape, dtype and batch;
rollouts (stories/s writing `new_tokens` after a `prompt_len`-token prompt, pure sampling) of storyjax's
jitted sampler at the full batch against HF `generate` at batch 4 (trl's default, the paper's path) and at
the full batch; the REINFORCE update time per story; and, with `--teacher=rubric,openai,jax`, each
teacher's grading stories/s, the in-process JAX teacher beside transformers on the same weights (see
storyjax/bench_teacher.py). Random student weights, so stories rarely stop early in either implementation.
HF needs the `bench` extra (torch, transformers); without it only storyjax runs.
"""

from __future__ import annotations

import json
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from storyjax import bench_compiled, host_memory, model as model_lib
from storyjax import profiling, reinforce, sampler
from storyjax import reward as reward_lib
from storyjax import rollout as rollout_lib
from storyjax.bench_pretrain import (SHAPES, cpu_isa, cpu_name, hf_config, hf_pretrain, ratio_and_spread,
                                     storyjax_pretrain,
                                     student_config, time_rounds)
from storyjax.bench_teacher import FLAG_KEYS, RANDOM_SHAPES, bench_teachers
from storyjax.teachers import config as teacher_defaults
from storyjax.teachers.openai_teacher import CONSTRAINTS
from storyjax.profiling import planned_bytes

flags.DEFINE_enum("preset", "tiny", ["tiny", "gpt2_small"], "Student shape to measure.")
flags.DEFINE_string("out", "", "Write all figures to this JSON file.")
flags.DEFINE_integer("steps", 0, "Timed steps per measurement (0: the preset's).")
flags.DEFINE_integer("rounds", 5, "Pretraining rows: times each is measured (`steps` steps a round); the row is "
                     "the median. On CPU the rows' rounds alternate and the ratio is the median of the "
                     "round-by-round ratios, printed with their range; elsewhere row after row.")
flags.DEFINE_list("batches", [], "Batch sizes (sequences per step) to measure (default: the preset's).")
flags.DEFINE_bool("hf", True, "Also measure HF transformers (needs torch and transformers).")
flags.DEFINE_list("rows", ["pretrain", "rollout", "teacher"], "Which groups of rows to measure.")
flags.DEFINE_list("teacher", ["none"], "Teachers whose grading to time, side by side (rubric, openai, jax; none: "
                  "skip). jax is also measured against transformers on the same weights (--hf).")
# The teacher flags set the teacher settings an interactive run reads (bench_teacher.FLAG_KEYS), with
# their defaults from the one place those are defined (storyjax/teachers/config.py).
_TEACHER = teacher_defaults.defaults()
flags.DEFINE_string("teacher_url", _TEACHER.openai.base_url, "openai teacher: the server's base URL "
                    "(teacher.openai.base_url).")
flags.DEFINE_string("teacher_model", _TEACHER.openai.model, "openai teacher: the served model (teacher.openai.model).")
flags.DEFINE_string("teacher_weights", _TEACHER.jax.weights, "jax teacher: a .gguf file or Hugging Face folder "
                    "(teacher.jax.weights), or random:SHAPE (llama3_8b, llama3_1b, tiny) for random weights and ids.")
flags.DEFINE_integer("teacher_stories", 0, "Stories to grade in the teacher rows (0: the preset's rollout batch).")
flags.DEFINE_integer("teacher_batch", _TEACHER.jax.batch_size, "Stories per teacher pass, jax and transformers "
                     "(teacher.jax.batch_size).")
flags.DEFINE_enum("teacher_constrain", _TEACHER.openai.constrain, sorted(CONSTRAINTS),
                  "openai teacher: the server's constrained decoding (teacher.openai.constrain).")
flags.DEFINE_float("teacher_temperature", _TEACHER.temperature, "LLM teachers' sampling temperature "
                   "(teacher.temperature; 0 on a server: greedy, comparable with the jax teacher's argmax digits).")
flags.DEFINE_list("attention", ["auto"], "Pretraining attention implementations to measure (auto, xla, cudnn; "
                  "model.attention); the first is the one compared with HF, the others are extra rows.")
flags.DEFINE_list("dropout", ["0"], "Pretraining dropout rates to measure: the first is the one compared with HF "
                  "(whose rows have none), the others extra storyjax rows (0.1: what a paper run does).")
flags.DEFINE_bool("compile_only", False, "Compile every GPU path at the preset's real shapes from abstract inputs "
                  "and read the programs (FLOPs, bytes, fusions, state copies, memory plan, CUDA lowering) without "
                  "running them: any host, a CPU included (storyjax/bench_compiled.py).")
flags.DEFINE_string("profile_dir", "", "Also write a JAX profiler trace (TensorBoard + Perfetto) of a few "
                    "pretraining steps and one rollout here, to see where device time goes.")


def flops_per_token(num_layers: int, d_model: int, seq: int, n_matmul_params: int) -> float:
    """Training FLOPs per token: 6·N for the matmuls (tied output layer included) + 12·L·d·T for attention."""
    return 6 * n_matmul_params + 12 * num_layers * d_model * seq


def matmul_params(shape: dict) -> int:
    """Parameters that take part in matmuls: all but the position table (the tied embedding counts once,
    as the output layer)."""

    cfg = student_config(shape)
    return model_lib.count_params(jax.eval_shape(lambda: model_lib.init_params(cfg, jax.random.key(0)))) - (
        cfg.max_len * cfg.d_model)


def peak_flops(device_kind: str) -> float | None:
    kind = device_kind.lower()
    if "h200" in kind or "h100" in kind:
        return 790e12  # measured bf16 matmul ceiling of the H200 these benchmarks ran on
    return None


def _timed(fn, repeats: int) -> float:
    """Median seconds of `repeats` calls after one warm-up call (a median: this machine's noise is large)."""
    fn()  # compile / warm up
    seconds = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - t0)
    return statistics.median(seconds)


def bench_rollout_storyjax(shape: dict, repeats: int, profile_dir: str = "") -> dict:
    """storyjax's jitted sampler writing the preset's stories, and its REINFORCE update on them."""
    cfg = student_config(shape)
    params = model_lib.init_params(cfg, jax.random.key(0))
    B, P, N = shape["stories"], shape["prompt_len"], shape["new_tokens"]
    prompt = jax.random.randint(jax.random.key(1), (B, P), 4, cfg.vocab_size)
    valid = jnp.ones((B, P), bool)
    calls = iter(range(10**6))

    def rollout():
        out = sampler.sample(cfg, params, prompt, valid, jax.random.key(next(calls)), jnp.float32(1.0),
                             jnp.int32(0), jnp.float32(1.0), max_new_tokens=N, eos_id=2, pad_id=1)
        return jax.block_until_ready(out)

    dt = _timed(rollout, repeats)
    if profile_dir:
        profile = profiling.traced_top(os.path.join(profile_dir, "rollout"), rollout)
        print(profiling.describe("rollout", profile))
    out = rollout()
    rl_cfg = reinforce.RLConfig(lr=1e-6, grad_clip=1.0, baseline="ema", ema_decay=0.9, whiten=False, kl_coef=0.2,
                                kl_target=6.0, kl_horizon=10_000.0, kl_estimator="k1", kl_mode="reward",
                                entropy_coef=0.0)
    opt = reinforce.make_optimizer(rl_cfg)
    step = reinforce.make_step(cfg, rl_cfg, opt)
    scores = np.asarray(jax.random.randint(jax.random.key(2), (B, 3), 0, 4), np.float32)
    rewards = reward_lib.story_rewards(reward_lib.RewardConfig(), scores, np.asarray(out.mask_BxN.sum(1)))
    batch = rollout_lib.make(prompt, valid, out, rewards.reward_B)
    box = [reinforce.init_state(params, opt, rl_cfg)]

    def update():
        box[0], metrics = step(box[0], params, batch)
        return jax.block_until_ready(metrics)

    dt_rl = _timed(update, repeats)
    # The jitted sampler behind sampler.sample, at the settings timed above (pure sampling: no filter sort).
    # Lowering again finds the executables jit compiled for the calls above in its cache (no recompilation).
    rollout_bytes = planned_bytes(sampler.lower_sample(
        cfg, params, prompt, valid, jax.random.key(0), jnp.float32(1.0), jnp.int32(0), jnp.float32(1.0),
        max_new_tokens=N, eos_id=2, pad_id=1).compile())
    update_bytes = planned_bytes(step.lower(box[0], params, batch).compile())
    return {"stories_per_s": B / dt, "rollout_s": dt, "mean_new_tokens": float(out.mask_BxN.sum(1).mean()),
            "reinforce_s_per_story": dt_rl / B, "reinforce_step_s": dt_rl,
            "rollout_xla_bytes": rollout_bytes, "reinforce_xla_bytes": update_bytes,
            **({"profile_top": profile} if profile_dir else {})}


def bench_rollout_hf(shape: dict, batch: int, repeats: int) -> dict:
    import torch
    import transformers

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if shape["dtype"] == "bfloat16" else torch.float32
    model = transformers.GPT2LMHeadModel(hf_config(shape)).to(device=device, dtype=dtype).eval()
    prompt = torch.randint(4, shape["vocab"], (batch, shape["prompt_len"]), device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def rollout():
        with torch.no_grad():
            out = model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=True, top_k=0, top_p=1.0,
                                 temperature=1.0, max_new_tokens=shape["new_tokens"], pad_token_id=1, eos_token_id=2)
        sync()
        return out

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    dt = _timed(rollout, repeats)
    return {"stories_per_s": batch / dt, "rollout_s": dt,
            "peak_bytes": torch.cuda.max_memory_allocated() if device == "cuda" else None}


def gib(b) -> str:
    return f"{b / 2**30:.2f} GiB" if b else "- GiB"


def saver(path: str, results: dict):
    """`save()` writes `results` to `path` (whole, atomically): called after every row, so a bench stopped
    at a time limit keeps the rows it finished."""
    def save() -> None:
        if not path:
            return
        tmp = f"{path}.tmp"
        with open(tmp, "w") as f:
            json.dump(results, f, indent=2, default=str)
        os.replace(tmp, path)
    return save


def compile_only(FLAGS, results: dict, save) -> None:
    shape = SHAPES[FLAGS.preset]
    teacher = FLAGS.teacher_weights[len("random:"):] if FLAGS.teacher_weights.startswith("random:") else "llama3_8b"
    stories = FLAGS.teacher_stories or shape["stories"]

    def write(name: str, row: dict) -> None:
        results["rows"][name] = row
        save()
        shown = {k: row[k] for k in ("flops", "bytes_accessed", "fusions", "param_copies", "temp_bytes",
                                     "lowers_for_cuda", "error") if k in row}
        print(f"{name}: {shown}", flush=True)

    batch = ([int(b) for b in FLAGS.batches] or shape["batches"])[-1]
    bench_compiled.rows({**shape, "stories": stories}, batch, RANDOM_SHAPES[teacher], teacher,
                        FLAGS.teacher_batch, write)


def hf_peers(wanted: bool) -> list:
    """(name, compiled) of the HF pretraining peers this machine can run: eager, and torch.compile on a GPU."""
    if not wanted:
        return []
    try:
        import torch
        import transformers  # noqa: F401
    except ImportError:
        print("HF peer skipped: `pip install -e .[bench]` for torch and transformers.")
        return []
    return [("hf_eager", False)] + ([("hf_compile", True)] if torch.cuda.is_available() else [])


def pretrain_variants(FLAGS) -> list:
    """(row key suffix, attention, dropout) per storyjax pretraining variant: the first is the one compared
    with HF; then the other attention implementations, then the other dropout rates."""
    variants = [("", FLAGS.attention[0], float(FLAGS.dropout[0]))]
    variants += [(f"_attn_{a}", a, float(FLAGS.dropout[0])) for a in FLAGS.attention[1:]]
    return variants + [(f"_dropout{float(d):g}", FLAGS.attention[0], float(d)) for d in FLAGS.dropout[1:]]


def pretrain_batch(FLAGS, shape: dict, batch: int, steps: int, peers: list, results: dict, save) -> list:
    """storyjax's pretraining variants and the HF peers at one batch, their rounds interleaved on CPU; the
    rows go into `results` (saved after each), the ratios against each peer too. Returns the printed rows."""
    dims = model_lib.PRESETS[shape["preset"]]
    interleave = jax.default_backend() == "cpu"
    runners, names = [], []
    for k, (suffix, attention, dropout) in enumerate(pretrain_variants(FLAGS)):
        key = f"pretrain_b{batch}_storyjax{suffix}"
        try:
            runners.append(storyjax_pretrain(shape, batch, attention, FLAGS.profile_dir, dropout))
        except Exception as e:  # noqa: BLE001 - an extra variant this machine lacks (cudnn on CPU) is a row
            if not k:
                raise
            results["rows"][key] = {"error": f"{type(e).__name__}: {e}"[:500]}
            print(f"pretrain b{batch} storyjax attention={attention}: {results['rows'][key]['error']}")
            continue
        names.append(key)
    peer_keys = [f"pretrain_b{batch}_{name}" for name, _ in peers]
    runners += [hf_pretrain(shape, batch, compiled) for _, compiled in peers]
    rates = dict(zip(names + peer_keys, time_rounds(runners, steps, FLAGS.rounds, interleave)))
    fpt = flops_per_token(dims["num_layers"], dims["d_model"], shape["seq"], matmul_params(shape))
    printed, ceiling = [], None
    for key, runner in zip(names + peer_keys, runners):
        row = runner.row(rates[key])
        ceiling = ceiling or peak_flops(row["device"])
        row["mfu"] = row["tokens_per_s"] * fpt / ceiling if ceiling else None
        results["rows"][key] = row
        save()
        impl = (f"storyjax/{row['attention']}" + (f" p={row['dropout']:g}" if row.get("dropout") else "")
                if key in names else key.split("_", 2)[2])
        printed.append((f"pretrain b{batch}", impl, row))
    for (name, _), key in zip(peers, peer_keys):
        ratio, spread = ratio_and_spread(rates[f"pretrain_b{batch}_storyjax"], rates[key], interleave)
        results["ratios"][f"pretrain_b{batch}_vs_{name}"] = ratio
        results["ratio_spreads"][f"pretrain_b{batch}_vs_{name}"] = spread
    return printed


def print_pretrain(results: dict, printed: list) -> None:
    # Memory: storyjax's step as XLA plans it; HF's torch.cuda peak for that row (GPU only).
    print(f"host CPU: {results['cpu']} ({results['cpu_isa']}); backend: {results['backend']}; "
          f"host memory: {results['host_malloc']} (${host_memory.ENV})")
    print(f"{'row':<16}{'impl':<16}{'tokens/s':>12}{'MFU':>8}{'mem GiB':>10}")
    for row, impl, r in printed:
        mfu = f"{100 * r['mfu']:.1f}%" if r.get("mfu") else "-"
        used = r.get("xla_bytes") or r.get("peak_bytes")
        mem = f"{used / 2**30:.2f}" if used else "-"
        print(f"{row:<16}{impl:<16}{r['tokens_per_s']:>12,.0f}{mfu:>8}{mem:>10}")


def rollout_rows(FLAGS, shape: dict, peers: list, results: dict, save) -> None:
    """storyjax's rollout and REINFORCE update at the preset's batch; HF generate at batch 4 and that batch."""
    full = shape["stories"]
    sj = bench_rollout_storyjax(shape, repeats=7, profile_dir=FLAGS.profile_dir)
    results["rows"][f"rollout_b{full}_storyjax"] = sj
    save()
    print(f"rollout b{full} storyjax: {sj['stories_per_s']:,.1f} stories/s "
          f"({sj['mean_new_tokens']:.1f} new tokens each, {gib(sj['rollout_xla_bytes'])}); REINFORCE update "
          f"{1e3 * sj['reinforce_s_per_story']:.3f} ms/story ({gib(sj['reinforce_xla_bytes'])})")
    for batch in (4, full) if peers else ():
        hf = bench_rollout_hf(shape, batch, repeats=1 if batch == 4 else 2)
        results["rows"][f"rollout_b{batch}_hf_generate"] = hf
        save()
        results["ratios"][f"rollout_b{full}_vs_hf_generate_b{batch}"] = sj["stories_per_s"] / hf["stories_per_s"]
        print(f"rollout b{batch} hf_generate: {hf['stories_per_s']:,.1f} stories/s ({gib(hf['peak_bytes'])})")


def teacher_rows(FLAGS, names: list, shape: dict, with_peers: bool, results: dict, save) -> None:
    host_memory.release()  # memory kept for reuse would hide part of the teacher's load peak
    t = bench_teachers(names, {flag: FLAGS[flag].value for flag in FLAG_KEYS},
                       FLAGS.teacher_stories or shape["stories"], with_peers)
    results["rows"].update(t["rows"])
    results["ratios"].update(t["ratios"])
    save()
    for key, r in t["rows"].items():
        extra = "".join(f", {k} {r[k]:.2f}" for k in r if k.endswith("agreement_with_jax"))
        scored = f", {r['scored']}/{r['stories']} scored" if "scored" in r else ""
        print(f"{key} {r['teacher']}: {r['stories_per_s']:,.1f} stories/s ({r['stories']} in {r['seconds']:.2f} s"
              f"{scored}{extra})")
        if r.get("weights_bytes"):
            peak = r["load_host_peak_bytes"]
            print(f"{key} load: {r['load_seconds']:.1f} s, weights {gib(r['weights_bytes'])}, host peak "
                  + (f"{gib(peak)} ({r['load_host_peak_vs_weights']:.2f}x the weights)" if peak else "not measured")
                  + (f", story pass plans {gib(r['story_pass_xla_bytes'])} of device memory"
                     if r.get("story_pass_xla_bytes") else ""))


def print_ratios(results: dict, rounds: int, steps: int) -> None:
    for k, v in results["ratios"].items():
        lo_hi = results["ratio_spreads"].get(k)
        paired = "paired " if results.get("rounds_interleaved") else ""
        spread = f" ({lo_hi[0]:.2f}-{lo_hi[1]:.2f}x over {rounds} {paired}rounds of {steps} steps)" if lo_hi else ""
        print(f"ratio {k}: {v:.2f}x{spread}")


def main(argv):
    del argv
    FLAGS = flags.FLAGS
    reuse = host_memory.keep_for_reuse()  # before JAX starts its backends: see storyjax/host_memory.py
    shape = SHAPES[FLAGS.preset]
    steps = FLAGS.steps or shape["steps"]
    results = {"preset": FLAGS.preset, "shape": shape, "steps": steps, "jax": jax.__version__,
               "backend": jax.default_backend(), "rows": {}, "ratios": {}, "ratio_spreads": {},
               "cpu": cpu_name(), "cpu_isa": cpu_isa(), "rounds": FLAGS.rounds,
               "host_malloc": "reuse" if reuse else "system", "xla_flags": os.environ.get("XLA_FLAGS", ""),
               "devices": [d.device_kind for d in jax.local_devices()]}
    save = saver(FLAGS.out, results)
    if FLAGS.compile_only:
        results["compile_only"] = True
        compile_only(FLAGS, results, save)
        return
    peers = hf_peers(FLAGS.hf)
    printed = []
    for batch in ([int(b) for b in FLAGS.batches] or shape["batches"]) if "pretrain" in FLAGS.rows else []:
        printed += pretrain_batch(FLAGS, shape, batch, steps, peers, results, save)
    results["rounds_interleaved"] = jax.default_backend() == "cpu"
    print_pretrain(results, printed)
    if "rollout" in FLAGS.rows:
        rollout_rows(FLAGS, shape, peers, results, save)
    names = [t for t in FLAGS.teacher if t != "none"]
    if "teacher" in FLAGS.rows and names:
        teacher_rows(FLAGS, names, shape, bool(peers), results, save)
    print_ratios(results, FLAGS.rounds, steps)
    save()


if __name__ == "__main__":
    app.run(main)
