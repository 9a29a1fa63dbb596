"""The pretraining rows of `python -m storyjax.bench`: storyjax's data-parallel train step beside Hugging Face's
GPT2LMHeadModel + torch AdamW at the same shape, dtype and batch, timed in rounds.

On CPU the rows' rounds alternate, so a slow spell of a shared machine slows both and their ratio round by
round holds; the ratio is the median of those, printed with their range.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from typing import Callable, NamedTuple

import jax
import numpy as np

from storyjax import model as model_lib
from storyjax import pretrain_step, profiling
from storyjax.profiling import planned_bytes
from storyjax.pretrain_settings import TrainSettings


SHAPES = {
    # vocab, layers, width, heads, seq, batches, steps, dtype; rollout batch, prompt and new tokens
    "tiny": dict(vocab=1536, preset="tiny", seq=128, batches=[16], steps=20, dtype="float32",
                 stories=32, prompt_len=20, new_tokens=64),
    "gpt2_small": dict(vocab=16_000, preset="gpt2_small", seq=512, batches=[16, 64], steps=20, dtype="bfloat16",
                       stories=360, prompt_len=20, new_tokens=90),
}


def student_config(shape: dict, attention: str = "auto", dropout: float = 0.0):
    """The storyjax student every row of a preset measures (no dropout unless asked, as in HF's rows)."""
    return model_lib.ModelConfig(vocab_size=shape["vocab"], dropout=dropout, compute_dtype=shape["dtype"],
                                 attention=attention, **model_lib.PRESETS[shape["preset"]])


def hf_config(shape: dict):
    """The same student as a transformers GPT2Config (dropout off; storyjax's special token ids)."""
    import transformers

    dims = model_lib.PRESETS[shape["preset"]]
    return transformers.GPT2Config(vocab_size=shape["vocab"], n_positions=dims["max_len"], n_embd=dims["d_model"],
                                   n_layer=dims["num_layers"], n_head=dims["num_heads"], resid_pdrop=0.0,
                                   embd_pdrop=0.0, attn_pdrop=0.0, tie_word_embeddings=True,
                                   bos_token_id=0, eos_token_id=2, pad_token_id=1)


def cpu_name() -> str:
    """The host CPU's model name (a speed figure names the machine it was measured on)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def cpu_isa(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The widest vector ISA both the CPU and XLA's settings allow: a CPU speed figure depends on it.
    `XLA_FLAGS=--xla_cpu_max_isa=AVX2` restricts XLA (and `ATEN_CPU_CAPABILITY=avx2` PyTorch) on a CPU
    that has more."""
    try:
        with open(cpuinfo) as f:
            cpu_flags = set(next((line for line in f if line.startswith("flags")), "").split())
    except OSError:
        return platform.machine()
    has = ("AMX" if "amx_tile" in cpu_flags else "AVX512" if "avx512f" in cpu_flags else
           "AVX2" if "avx2" in cpu_flags else "SSE4" if "sse4_2" in cpu_flags else platform.machine())
    cap = next((f.split("=", 1)[1] for f in os.environ.get("XLA_FLAGS", "").split()
                if f.startswith("--xla_cpu_max_isa=")), "")
    return f"{has} (XLA capped at {cap})" if cap else has


class Rounds(NamedTuple):
    """A pretraining row being timed: `round(steps)` runs that many steps and returns tokens/s; `row(rates)`
    is the row's figures given its rounds' rates (their median is the row's rate)."""
    round: Callable[[int], float]
    row: Callable[[list], dict]


def storyjax_pretrain(shape: dict, batch: int, attention: str = "auto", profile_dir: str = "",
                      dropout: float = 0.0) -> Rounds:
    """storyjax's data-parallel train step at this shape, compiled and warmed up."""
    devices = jax.local_devices()
    cfg = student_config(shape, attention, dropout)
    train_cfg = TrainSettings(lr=5e-4, warmup_frac=0.01, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0,
                              grad_clip=1.0)
    opt = pretrain_step.make_optimizer(train_cfg, 10_000)
    params = model_lib.init_params(cfg, jax.random.key(0))
    mesh = pretrain_step.mesh_of(devices)
    box = {"state": pretrain_step.replicate(pretrain_step.TrainState(params, opt.init(params)), mesh)}
    jitted = pretrain_step.make_train_step(cfg, opt, pretrain_step.lr_schedule(train_cfg, 10_000), 0, mesh,
                                           dropout=dropout > 0)
    D = len(devices)
    if batch % D:
        raise ValueError(f"batch {batch} is not divisible by {D} devices.")
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, cfg.vocab_size, (1, batch, shape["seq"]), dtype=np.int32)
    # on the devices once, not every step
    tokens = pretrain_step.global_rows(tokens, mesh, pretrain_step.P(None, pretrain_step.AXIS))
    step_no = pretrain_step.replicate(np.int32(0), mesh)
    # Compiled once, ahead of time: the executable that is timed is the one whose memory plan is reported.
    step_fn = jitted.lower(box["state"], tokens, step_no).compile()

    def run(steps: int) -> None:
        for i in range(steps):
            box["state"], box["metrics"] = step_fn(box["state"], tokens, step_no)
            if i % 8 == 7:
                jax.block_until_ready(box["metrics"])  # bounded dispatch queue
        jax.block_until_ready(box["metrics"])

    def one_round(steps: int) -> float:
        t0 = time.perf_counter()
        run(steps)
        return batch * shape["seq"] * steps / (time.perf_counter() - t0)

    run(3)  # warm up

    def row(rates: list[float]) -> dict:
        profile = None
        if profile_dir:
            profile = profiling.traced_top(os.path.join(profile_dir, f"pretrain_b{batch}_{attention}"),
                                           lambda: run(3))
            print(profiling.describe(f"pretrain b{batch} {attention}", profile))
        stats = devices[0].memory_stats() or {}
        rate = statistics.median(rates)
        return {"tokens_per_s": rate, "tokens_per_s_rounds": rates, "step_s": batch * shape["seq"] / rate,
                "num_params": model_lib.count_params(params),
                # xla_bytes: this step's planned memory; process_peak_bytes: the process's peak so far (all rows)
                "xla_bytes": planned_bytes(step_fn), "process_peak_bytes": stats.get("peak_bytes_in_use"),
                "device": devices[0].device_kind,
                "num_devices": D, "final_loss": float(pretrain_step.to_host(box["metrics"]["loss"])),
                # what the training pass (seq - 1 positions) ran
                "attention": "cudnn" if model_lib.use_cudnn_attention(
                    cfg, pretrain_step.forward_len(shape["seq"]), dropout == 0) else "xla", "dropout": dropout,
                **({"profile_top": profile} if profile_dir else {})}

    return Rounds(one_round, row)


def hf_pretrain(shape: dict, batch: int, compile_model: bool) -> Rounds:
    """Hugging Face's GPT2LMHeadModel + torch AdamW at the same shape, warmed up."""
    import torch
    import transformers

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = transformers.GPT2LMHeadModel(hf_config(shape)).to(device)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=5e-4, fused=device == "cuda")
    run = torch.compile(model) if compile_model else model
    tokens = torch.randint(0, shape["vocab"], (batch, shape["seq"]), device=device)
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=shape["dtype"] == "bfloat16")
    last = {}

    def step():
        with autocast:
            loss = run(input_ids=tokens, labels=tokens).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        last["loss"] = loss

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for _ in range(3):
        step()
    sync()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def one_round(steps: int) -> float:
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        sync()
        return batch * shape["seq"] * steps / (time.perf_counter() - t0)

    def row(rates: list[float]) -> dict:
        rate = statistics.median(rates)
        return {"tokens_per_s": rate, "tokens_per_s_rounds": rates, "step_s": batch * shape["seq"] / rate,
                "peak_bytes": torch.cuda.max_memory_allocated() if device == "cuda" else None,
                "device": torch.cuda.get_device_name() if device == "cuda" else cpu_name(),
                "final_loss": float(last["loss"].detach()), "torch": torch.__version__,
                "transformers": transformers.__version__}

    return Rounds(one_round, row)


def time_rounds(runners: list[Rounds], steps: int, rounds: int, interleave: bool) -> list[list[float]]:
    """Each runner's tokens/s over `rounds` rounds of `steps` steps. Interleaved (round 1 of every runner,
    then round 2, ...) the rounds of different runners are neighbours in time, so a slow spell of a shared
    machine lowers them together and their ratio round by round holds; otherwise runner after runner (on an
    accelerator, whose timings are steady and where switching frameworks between rounds would time caches
    and clocks warmed by the other)."""
    rates = [[] for _ in runners]
    if interleave:
        for _ in range(rounds):
            for r, runner in zip(rates, runners):
                r.append(runner.round(steps))
    else:
        for r, runner in zip(rates, runners):
            r.extend(runner.round(steps) for _ in range(rounds))
    return rates


def ratio_and_spread(ours: list[float], theirs: list[float], paired: bool) -> tuple[float, tuple[float, float]]:
    """Our rate over theirs, with its spread. Paired rounds: the median and range of the round-by-round
    ratios. Otherwise the ratio of the medians, between our slowest round against their fastest and the
    other way round."""
    if paired:
        ratios = [a / b for a, b in zip(ours, theirs)]
        return statistics.median(ratios), (min(ratios), max(ratios))
    return statistics.median(ours) / statistics.median(theirs), (min(ours) / max(theirs), max(ours) / min(theirs))
