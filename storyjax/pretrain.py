"""Pretraining loop: data → data-parallel step → ledger → milestone and resume checkpoints.

Step N+1 is dispatched before step N's metrics are read, so the host never
stalls the devices except at checkpoints, where the metrics of the step being
saved are checked first: a checkpoint never holds a non-finite state.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import time
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from storyjax import blimp, distributed, export, memory_plan, pretrain_step, profiling, run_loop, run_outputs
from storyjax import checkpoint as ckpt_lib
from storyjax import data as data_lib
from storyjax import ledger as ledger_lib
from storyjax import model as model_lib
from storyjax import student as student_lib
from storyjax.setting_checks import share
from storyjax.data import packing, source_identity
from storyjax.data.prepare import prepare
from storyjax.pretrain_settings import PretrainSettings, TrainSettings


def parse(config) -> PretrainSettings:
    """The run's settings as a checked record; refuses settings no run can use, before any work or any file
    is written."""
    return check(PretrainSettings.from_config(config))


def check(config: PretrainSettings) -> PretrainSettings:
    t, m = config.train, config.model
    checks = [
        (t.batch_size >= 1, f"train.batch_size={t.batch_size}: give at least 1 block per step"),
        (t.grad_accum >= 0, f"train.grad_accum={t.grad_accum}: use 1 (no accumulation) or more, or 0 (the fewest "
                            "micro-batches whose step fits the device's memory)"),
        (t.device_memory_gb >= 0, f"train.device_memory_gb={t.device_memory_gb}: use 0 (what the device reports) "
                                  "or the device's memory in GiB"),
        (t.num_steps >= 0 and t.max_words >= 0 and t.num_epochs >= 0,
         "train.num_steps, train.max_words and train.num_epochs must not be negative"),
        (math.isfinite(t.lr) and t.lr > 0, f"train.lr={t.lr}: use a positive learning rate (tiny: 2e-3)"),
        (t.seq_len >= 0, f"train.seq_len={t.seq_len}: use 0 (the model context) or a positive length"),
        (config.checkpoint.every_steps >= 1, f"checkpoint.every_steps={config.checkpoint.every_steps}: use 1 or more"),
        (config.checkpoint.keep >= 1, f"checkpoint.keep={config.checkpoint.keep}: keep at least 1"),
        (config.log_every >= 1, f"log_every={config.log_every}: use 1 or more"),
        (config.eval_rows >= 1, f"eval_rows={config.eval_rows}: use 1 or more"),
        (config.tokenizer.vocab_size >= 300,
         f"tokenizer.vocab_size={config.tokenizer.vocab_size}: byte fallback alone needs 256 pieces plus the "
         "specials; use 300 or more"),
        (config.tokenizer.max_lines >= 1, f"tokenizer.max_lines={config.tokenizer.max_lines}: train it on 1 line or "
                                          "more"),
        (share(t.warmup_frac, 1.0 + 1e-9), f"train.warmup_frac={t.warmup_frac}: use a share of the steps in [0, 1]"),
        (share(t.b1) and share(t.b2), f"train.b1={t.b1}, train.b2={t.b2}: Adam's decays are in [0, 1)"),
        (math.isfinite(t.eps) and t.eps > 0, f"train.eps={t.eps}: use a small positive number (1e-8)"),
        (share(t.weight_decay, math.inf), f"train.weight_decay={t.weight_decay}: use 0 or more"),
        (share(t.grad_clip, math.inf), f"train.grad_clip={t.grad_clip}: use 0 (none) or a positive norm"),
        (t.grad_reduce in ("mean", "ordered"), f"train.grad_reduce={t.grad_reduce!r}: use 'mean' or 'ordered'"),
        (all(getattr(m, k) >= 0 for k in ("num_layers", "d_model", "num_heads", "max_len")),
         "model.num_layers, d_model, num_heads and max_len must be 0 (the preset's) or positive"),
        (share(m.dropout), f"model.dropout={m.dropout}: use a rate in [0, 1)"),
        (share(config.ledger.max_epochs, math.inf), f"ledger.max_epochs={config.ledger.max_epochs}: use 0 (no cap) "
                                                    "or more"),
        (config.eval_every >= 0, f"eval_every={config.eval_every}: use 0 (only at the end) or a step count"),
        (config.seed >= 0, f"seed={config.seed}: use a seed >= 0"),
        (not config.init_from_hf or os.path.isdir(config.init_from_hf),
         f"init_from_hf={config.init_from_hf!r} is not a folder: give a transformers GPT-2 folder"),
    ]
    problems = [why for ok, why in checks if not ok]
    if problems:
        raise ValueError("; ".join(problems) + ".")
    model_lib.model_config_from(m, config.tokenizer.vocab_size)  # preset, dtype, attention, heads dividing d_model
    data_lib.check(config.data)
    distributed.check(config.distributed)
    blimp.check_dir(config.milestone_eval.blimp_dir)
    return config


def batch_layout(train_cfg: TrainSettings, n_devices: int, n_processes: int,
                 grad_accum: int = 0) -> tuple[int, int]:
    """Returns (grad_accum, rows per device per micro-batch), or a clear error. `grad_accum`: the count
    chosen by the memory plan where the config leaves it to it (train.grad_accum=0)."""
    B, A = train_cfg.batch_size, grad_accum or train_cfg.grad_accum or 1
    unit = n_devices * n_processes * A
    if A < 1 or B % unit:
        raise ValueError(
            f"train.batch_size={B} must be divisible by devices × processes × grad_accum = "
            f"{n_devices} × {n_processes} × {A} = {unit}. Set --config.train.batch_size to a multiple of "
            f"{unit} (e.g. {max(unit, B // unit * unit)}) or change --config.train.grad_accum.")
    return A, B // unit


def total_steps(train_cfg: TrainSettings, ledger: ledger_lib.Ledger, tokens_per_step: int) -> int:
    if train_cfg.num_steps:
        steps = int(train_cfg.num_steps)
    elif train_cfg.max_words:
        steps = math.ceil(train_cfg.max_words * ledger.tokens_per_word / tokens_per_step)
    elif train_cfg.num_epochs:
        steps = int(train_cfg.num_epochs * ledger.tokens_per_epoch // tokens_per_step)
    else:
        raise ValueError("say how long to train: --config.train.num_steps, .max_words or .num_epochs.")
    cap = ledger.max_steps(tokens_per_step)
    if cap is not None and steps > cap:
        raise ValueError(
            f"{steps} steps of {tokens_per_step} tokens would exceed the {ledger.max_epochs}-epoch cap "
            f"({cap} steps on this corpus). Train for fewer steps, or lift the cap with "
            "--config.ledger.max_epochs=0 for a run that does not claim BabyLM compliance.")
    if steps < 1:
        raise ValueError(f"the config gives {steps} training steps; train for at least one.")
    return steps


def eval_loss(eval_step, params, stream: packing.TokenStream, block_len: int, n_devices: int,
              max_rows: int, mesh) -> float:
    """Mean next-token loss over the first validation blocks, in corpus order."""
    n = min(packing.num_blocks(stream, block_len), max_rows) // n_devices * n_devices
    if n == 0:
        raise ValueError(f"the validation split has fewer than {n_devices} blocks of {block_len} tokens; "
                         "give it more text (data.validation_fraction / data.validation_files).")
    tokens = np.asarray(stream.tokens[:n * block_len]).reshape(n_devices, n // n_devices, block_len)
    rows_per_call = 8  # bounds activation memory; the last, shorter chunk compiles once more
    losses = []
    for start in range(0, tokens.shape[1], rows_per_call):
        chunk = tokens[:, start:start + rows_per_call]
        loss = eval_step(params, pretrain_step.global_rows(chunk.reshape(-1, block_len), mesh))
        losses.append((float(pretrain_step.to_host(loss)), chunk.shape[1]))
    return sum(l * w for l, w in losses) / sum(w for _, w in losses)


def import_hf(config: PretrainSettings) -> Optional[ImportedStudent]:
    """The transformers checkpoint to start from (`init_from_hf`), or None to train from scratch."""
    if not config.init_from_hf:
        return None
    loaded = student_lib.from_hf(config.init_from_hf, config.model.compute_dtype, config.model.dropout)
    cfg = dataclasses.replace(loaded.model_cfg, attention=config.model.attention).validate()
    logging.info("Starting from the transformers checkpoint %s (its shape and tokenizer; model.preset and "
                 "tokenizer.vocab_size are not used).", config.init_from_hf)
    return ImportedStudent(cfg, loaded.params, loaded.tok, loaded.tokenizer_json, loaded.source)


class ImportedStudent(NamedTuple):
    model_cfg: model_lib.ModelConfig
    params: Any
    tokenizer: Any
    tokenizer_json: bytes
    path: str


class Setup(NamedTuple):
    """What a pretraining run is made of, decided before its first step."""
    data: Any                     # storyjax.data.prepare's corpus: tokenizer, train and validation streams
    model_cfg: model_lib.ModelConfig
    block_len: int
    devices: list                 # this process's
    mesh: Any                     # every process's devices along the data-parallel axis
    batch_shape: tuple            # [devices, grad_accum, rows per device per micro-batch, block_len]
    num_steps: int
    tokens_per_step: int
    optimizer: Any
    schedule: Any


def setup(config: PretrainSettings, workdir: str, imported: Optional[ImportedStudent]) -> Setup:
    devices, all_devices = distributed.train_devices(config.distributed.local_devices)
    batch_layout(config.train, len(devices), jax.process_count())  # a batch the devices cannot share: refused now
    # A workdir of another corpus is refused before its tokenizer or token cache is touched.
    data_source = source_identity(config.data)
    ckpt_lib.check_run_meta(workdir, {"data_source": data_source}, partial=True)
    # Process 0 builds the corpus, trains the tokenizer and tokenizes; the others then read what it wrote
    # (or, where the tfds folder is per host, build the same thing: every step is deterministic).
    hf_tok = (imported.tokenizer, imported.tokenizer_json, imported.path) if imported else None
    data = distributed.primary_first("data prepared", lambda: prepare(config, workdir, data_source["config"], hf_tok))
    model_cfg = imported.model_cfg if imported else model_lib.model_config_from(config.model,
                                                                                  data.tokenizer.vocab_size)
    block_len = config.train.seq_len or model_cfg.max_len
    if block_len > model_cfg.max_len:
        raise ValueError(f"train.seq_len={block_len} exceeds the model context {model_cfg.max_len}.")
    run_meta = {
        "model": model_cfg.shape_dict(),
        "tokenizer_sha256": data.tokenizer.sha256, "block_len": block_len,
        "data": config.data.name, "data_source": data_source, "seed": config.seed,
        **({"init_from_hf": imported.path} if imported else {})}
    distributed.primary_first("run meta", lambda: ckpt_lib.check_run_meta(workdir, run_meta))
    tokens_per_step = config.train.batch_size * block_len
    num_steps = total_steps(config.train, fresh_ledger(config, data, block_len), tokens_per_step)
    mesh, optimizer = pretrain_step.mesh_of(all_devices), pretrain_step.make_optimizer(config.train, num_steps)
    schedule = pretrain_step.lr_schedule(config.train, num_steps)
    grad_accum = plan_grad_accum(config, model_cfg, optimizer, schedule, mesh, block_len)
    _, micro_rows = batch_layout(config.train, len(devices), jax.process_count(), grad_accum)
    return Setup(data, model_cfg, block_len, devices, mesh, (len(devices), grad_accum, micro_rows, block_len),
                 num_steps, tokens_per_step, optimizer, schedule)


def plan_grad_accum(config: PretrainSettings, model_cfg, optimizer, schedule, mesh, block_len: int) -> int:
    """train.grad_accum, or where it is 0 the fewest micro-batches whose compiled step fits the device
    (storyjax/memory_plan.py); a given count whose plan does not fit is refused here, before any step."""
    # this process's first device (another process's cannot be asked; on a multi-host mesh they are alike)
    mine = next(d for d in mesh.devices.flat if d.process_index == jax.process_index())
    limit = memory_plan.device_bytes(mine, config.train.device_memory_gb)
    rows = config.train.batch_size // mesh.devices.size  # per device per step

    @functools.lru_cache(maxsize=None)
    def plan(a: int) -> int:
        step = pretrain_step.make_train_step(model_cfg, optimizer, schedule, config.seed, mesh,
                                             dropout=model_cfg.dropout > 0, grad_reduce=config.train.grad_reduce)
        return profiling.planned_bytes(step.lower(*pretrain_step.abstract_args(
            model_cfg, optimizer, mesh, a, config.train.batch_size // a, block_len)).compile())

    grad_accum, need = memory_plan.choose(plan, rows, limit, config.train.grad_accum)
    if limit:
        logging.info("Memory plan: %d micro-batch(es) a step, %.1f GiB of the device's %.1f GiB.", grad_accum,
                     need / 2**30, limit / 2**30)
    return grad_accum


def fresh_ledger(config: PretrainSettings, data, block_len: int) -> ledger_lib.PretrainCount:
    return ledger_lib.PretrainCount(tokens_per_word=data.tokens_per_word,
                                    tokens_per_epoch=packing.num_blocks(data.train, block_len) * block_len,
                                    max_epochs=config.ledger.max_epochs)


def run(config, workdir: str) -> dict:
    """The job's entry (configs/pretrain.py): its settings parsed, then `run_settings`."""
    return run_settings(parse(config), workdir)


def run_settings(config: PretrainSettings, workdir: str) -> dict:
    """A pretraining run from its parsed settings (the job, the quickstart's first phase, an experiment's)."""
    workdir = os.path.abspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    blimp.check_dir(config.milestone_eval.blimp_dir)
    imported = import_hf(config)
    su = setup(config, workdir, imported)

    def init() -> pretrain_step.TrainState:
        if imported is not None:
            params = jax.tree.map(jnp.asarray, imported.params)
        else:
            params = student_lib.fresh_params(su.model_cfg, config.seed)
        return pretrain_step.TrainState(params, su.optimizer.init(params))

    with run_loop.Run(workdir, keep=config.checkpoint.keep) as run:
        start = run.start(jax.eval_shape(init), fresh_ledger(config, su.data, su.block_len), total_steps=su.num_steps)
        if start.step:
            logging.info("Resumed from step %d (%.0f words seen).", start.step, start.ledger.words_seen)
        loop = Loop(config, su, run, start.ledger, {"loss_first": None, "loss_last": None, **start.extra})
        state = start.state if start.state is not None else init()
        logging.info("Model: %s, %d parameters; %d steps of %d tokens on %d devices.", su.model_cfg,
                     model_lib.count_params(state.params), su.num_steps, su.tokens_per_step, len(su.devices))
        p_state = pretrain_step.replicate(state, su.mesh)
        del state
        p_state, step = loop.train(p_state, start.step)
    val = loop.val_loss(p_state.params)
    params = pretrain_step.to_host(p_state.params)
    ledger = loop.ledger
    return run.end(ledger, {
        "job": "pretrain", "steps": step, "tokens": ledger.tokens_seen, "words": ledger.words_seen,
        "epochs": ledger.epochs, "tokens_per_word": ledger.tokens_per_word,
        "loss_first": loop.extra["loss_first"], "loss_last": loop.extra["loss_last"], "val_loss": val,
        "val_ppl": math.exp(val), "checkpoints": run.ckpts.milestones(), "latest_step": step,
        "num_params": model_lib.count_params(params), "param_checksum": run_outputs.param_checksum(params),
    }, step=step, val_loss=val)


class Loop:
    """The pretraining loop in a run: steps, their metrics one step late, checkpoints and milestones."""

    def __init__(self, config: PretrainSettings, su: Setup, run: run_loop.Run, ledger: ledger_lib.Ledger, extra: dict):
        self.config, self.su, self.run, self.ledger, self.extra = config, su, run, ledger, extra
        self.milestones = sorted(config.ledger.milestones or ledger_lib.BABYLM_MILESTONES)
        self.train_step = pretrain_step.make_train_step(
            su.model_cfg, su.optimizer, su.schedule, config.seed, su.mesh, dropout=su.model_cfg.dropout > 0,
            grad_reduce=config.train.grad_reduce)
        self.eval_step = pretrain_step.make_eval_step(su.model_cfg, su.mesh)
        self.t_last, self.tokens_since = time.time(), 0

    def batch(self, k: int) -> jax.Array:
        """Step k's global batch [grad_accum, rows, T]: device d of this process takes rows
        [d·A·B + a·B, d·A·B + (a+1)·B) of its rows in micro-batch a."""
        rows = packing.global_batch(self.su.data.train, self.su.block_len, self.config.seed, k,
                                    self.config.train.batch_size, jax.process_index(), jax.process_count())
        D, A, B, T = self.su.batch_shape
        local_AxNxT = rows.reshape(D, A, B, T).transpose(1, 0, 2, 3).reshape(A, D * B, T)
        return pretrain_step.global_rows(local_AxNxT, self.su.mesh, pretrain_step.P(None, pretrain_step.AXIS))

    def train(self, p_state, step: int):
        """Step N+1 is dispatched before step N's metrics are read (`pending`)."""
        config, su, run = self.config, self.su, self.run
        pending = None
        run.progress(total=su.num_steps, initial=step, unit="step", desc="", enabled=config.progress_bar)
        while step < su.num_steps and not run.preempted:
            batch = self.batch(step)
            self.ledger.charge(su.tokens_per_step)
            p_state, metrics = self.train_step(p_state, batch, pretrain_step.replicate(np.int32(step), su.mesh))
            step += 1
            if pending is not None:
                self.log(*pending)
            pending = (step, metrics, self.ledger.to_dict())  # the ledger as of this step, logged later
            self.tokens_since += su.tokens_per_step
            run.bar.update(1)
            due = self.ledger.due_milestones(self.milestones)
            if due or step % config.checkpoint.every_steps == 0 or step == su.num_steps or run.preempted:
                self.check(step, metrics)  # blocks: never checkpoint an unverified state
                host_state = pretrain_step.to_host(p_state)
                run.reach_milestones(step, self.ledger, due, host_state, self.extra,
                                     lambda name, _: self.at_milestone(step, name, p_state, host_state))
                run.save_latest(step, host_state, self.ledger, self.extra)
            if config.eval_every and step % config.eval_every == 0:
                run.out.scalars(step, {"val_loss": self.val_loss(p_state.params)})
        if pending is not None:
            self.check(*pending[:2])
        run.finish(step, self.ledger)
        return p_state, step

    def check(self, step: int, metrics) -> dict:
        """Fetches a step's metrics, stops on non-finite ones, records the loss in `extra`."""
        m = {k: float(v) for k, v in pretrain_step.to_host(metrics).items()}
        loss_finite = math.isfinite(m["loss"]) and math.isfinite(m["grad_norm"])
        if not (loss_finite and m.pop("state_finite")):
            raise self.run.diverged(step, loss_finite, "--config.train.lr",
                                    f" (loss {m['loss']}, grad norm {m['grad_norm']})")
        if self.extra["loss_first"] is None:
            self.extra["loss_first"] = m["loss"]
        self.extra["loss_last"] = m["loss"]
        return m

    def log(self, step: int, metrics, ledger_dict: dict) -> None:
        m = self.check(step, metrics)
        if step % self.config.log_every and step != 1:
            return
        now = time.time()
        tok_s = self.tokens_since / max(now - self.t_last, 1e-9)
        self.t_last, self.tokens_since = now, 0
        self.run.out.scalars(step, {**m, "tokens_per_s": tok_s, "words": ledger_dict["words_seen"],
                                    "epochs": ledger_dict["epochs"]})
        self.run.out.audit("step", ledger_lib.PretrainCount.from_dict(ledger_dict), step=step, loss=m["loss"])
        self.run.bar.set_postfix(loss=f"{m['loss']:.3f}", tok_s=f"{tok_s:,.0f}",
                                 words=f"{ledger_dict['words_seen']:,.0f}")

    def at_milestone(self, step: int, name: str, p_state, host_state) -> None:
        """The evaluations and export `config.milestone_eval` and `config.export_hf` ask for."""
        config, su = self.config, self.su
        if config.milestone_eval.val or config.milestone_eval.blimp_dir:
            record = {}
            if config.milestone_eval.val:  # sharded over every process's devices: every process takes part
                record["val_loss"] = self.val_loss(p_state.params)
            record.update(blimp.milestone_record(su.model_cfg, host_state.params, su.data.tokenizer,
                                                 config.milestone_eval.blimp_dir))
            self.run.out.milestone_eval(self.ledger, step, name, self.ledger.words_seen, record)
        if config.export_hf and run_outputs.is_writer():
            export.export_milestone(self.run.workdir, name, su.model_cfg, host_state.params, su.data.tokenizer,
                                    os.path.join(self.run.workdir, "tokenizer"))

    def val_loss(self, params) -> float:
        return eval_loss(self.eval_step, params, self.su.data.validation, self.su.block_len, len(self.su.devices),
                         self.config.eval_rows, self.su.mesh)


def closing_words(summary: dict, workdir: str) -> str:
    """What the run did, in words, and where its outputs are."""
    milestones = ", ".join(summary.get("checkpoints") or []) or "none yet"
    return (f"Pretrained {summary['num_params']:,} parameters for {summary['steps']} steps on "
            f"{summary['words']:,.0f} words ({summary['epochs']:.2f} epochs): training loss "
            f"{summary['loss_first']:.3f} → "
            f"{summary['loss_last']:.3f}, validation loss {summary['val_loss']:.3f} (perplexity "
            f"{summary['val_ppl']:.1f} per token).\nOutputs in {workdir}: latest/ (the checkpoint a rerun resumes "
            "from), "
            f"milestones/ ({milestones}), tokenizer/, tensorboard/, summary.json; learn from it with "
            f"configs/interactive.py --config.init_checkpoint={workdir}.")
