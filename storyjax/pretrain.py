"""Pretraining loop: data → pmapped step → ledger → milestone and resume checkpoints.

Step N+1 is dispatched before step N's metrics are read, so the host never
stalls the devices except at checkpoints, where the metrics of the step being
saved are checked first: a checkpoint never holds a non-finite state.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from tqdm import tqdm

from storyjax import checkpoint as ckpt_lib
from storyjax import ledger as ledger_lib
from storyjax import model as model_lib
from storyjax import distributed, preemption, pretrain_step, run_outputs
from storyjax.data import packing, source_identity
from storyjax.data.prepare import prepare



def validate(config: ml_collections.ConfigDict) -> None:
    """Refuses settings no run can use, before any work or any file is written."""
    t = config.train
    checks = [
        (t.batch_size >= 1, f"train.batch_size={t.batch_size}: give at least 1 block per step"),
        (t.grad_accum >= 1, f"train.grad_accum={t.grad_accum}: use 1 (no accumulation) or more"),
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
    ]
    problems = [why for ok, why in checks if not ok]
    if problems:
        raise ValueError("; ".join(problems) + ".")


def batch_layout(train_cfg: ml_collections.ConfigDict, n_devices: int, n_processes: int) -> tuple[int, int]:
    """Returns (grad_accum, rows per device per micro-batch), or a clear error."""
    B, A = train_cfg.batch_size, train_cfg.grad_accum
    unit = n_devices * n_processes * A
    if A < 1 or B % unit:
        raise ValueError(
            f"train.batch_size={B} must be divisible by devices × processes × grad_accum = "
            f"{n_devices} × {n_processes} × {A} = {unit}. Set --config.train.batch_size to a multiple of "
            f"{unit} (e.g. {max(unit, B // unit * unit)}) or change --config.train.grad_accum.")
    return A, B // unit


def total_steps(train_cfg, ledger: ledger_lib.Ledger, tokens_per_step: int) -> int:
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
              max_rows: int) -> float:
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
        losses.append((float(jax.device_get(eval_step(params, chunk))[0]), chunk.shape[1]))
    return sum(l * w for l, w in losses) / sum(w for _, w in losses)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    workdir = os.path.abspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    from storyjax.evaluate import check_blimp_dir
    check_blimp_dir(config.milestone_eval.blimp_dir)
    devices, pmap_devices = distributed.train_devices(config.distributed.local_devices)
    grad_accum, micro_rows = batch_layout(config.train, len(devices), jax.process_count())
    hf_params = None
    if config.init_from_hf:
        from storyjax import export
        hf_cfg, hf_params, hf_tok, hf_json = export.load_hf(config.init_from_hf, config.model.compute_dtype,
                                                            config.model.dropout)
        hf_cfg = dataclasses.replace(hf_cfg, attention=config.model.get("attention", "auto")).validate()
        logging.info("Starting from the transformers checkpoint %s (its shape and tokenizer; model.preset and "
                     "tokenizer.vocab_size are not used).", config.init_from_hf)
        imported = (hf_tok, hf_json, os.path.abspath(config.init_from_hf))
    else:
        imported = None
    # A workdir of another corpus is refused before its tokenizer or token cache is touched.
    data_source = source_identity(config.data)
    ckpt_lib.check_run_meta(workdir, {"data_source": data_source}, partial=True)
    # Process 0 builds the corpus, trains the tokenizer and tokenizes; the others then read what it wrote
    # (or, where the tfds folder is per host, build the same thing: every step is deterministic).
    data = distributed.primary_first("data prepared",
                                     lambda: prepare(config, workdir, data_source["config"], imported))
    model_cfg = hf_cfg if imported else model_lib.model_config_from(config.model, data.tokenizer.vocab_size)
    block_len = config.train.seq_len or model_cfg.max_len
    if block_len > model_cfg.max_len:
        raise ValueError(f"train.seq_len={block_len} exceeds the model context {model_cfg.max_len}.")
    run_meta = {
        "model": model_cfg.shape_dict(),
        "tokenizer_sha256": data.tokenizer.sha256, "block_len": block_len,
        "data": config.data.name, "data_source": data_source, "seed": config.seed,
        **({"init_from_hf": os.path.abspath(config.init_from_hf)} if config.init_from_hf else {})}
    distributed.primary_first("run meta", lambda: ckpt_lib.check_run_meta(workdir, run_meta))

    tokens_per_step = config.train.batch_size * block_len
    ledger = ledger_lib.Ledger(tokens_per_word=data.tokens_per_word,
                               tokens_per_epoch=packing.num_blocks(data.train, block_len) * block_len,
                               max_epochs=config.ledger.max_epochs)
    num_steps = total_steps(config.train, ledger, tokens_per_step)
    schedule = pretrain_step.lr_schedule(config.train, num_steps)
    optimizer = pretrain_step.make_optimizer(config.train, num_steps)
    milestones = sorted(config.ledger.milestones or ledger_lib.BABYLM_MILESTONES)

    def init() -> pretrain_step.TrainState:
        if hf_params is not None:
            params = jax.tree.map(jnp.asarray, hf_params)
        else:
            params = model_lib.init_params(model_cfg, jax.random.key(config.seed))
        return pretrain_step.TrainState(params, optimizer.init(params))

    ckpts = ckpt_lib.Checkpoints(workdir, keep=config.checkpoint.keep)
    try:
        restored = ckpts.restore_latest(jax.eval_shape(init))
    except BaseException:
        ckpts.close()  # an open manager's threads would bury the error under asyncio tracebacks at exit
        raise
    extra = {"loss_first": None, "loss_last": None}
    jsonl = os.path.join(workdir, "ledger.jsonl")
    if restored is None:
        step, state = 0, init()
        ledger_lib.append_jsonl(jsonl, "start", ledger, total_steps=num_steps)
    else:
        step, state, ledger_dict, saved_extra = restored
        extra.update(saved_extra)
        ledger = ledger_lib.Ledger.from_dict(ledger_dict)
        ledger_lib.append_jsonl(jsonl, "resume", ledger, total_steps=num_steps)
        logging.info("Resumed from step %d (%.0f words seen).", step, ledger.words_seen)
    logging.info("Model: %s, %d parameters; %d steps of %d tokens on %d devices.", model_cfg,
                 model_lib.count_params(state.params), num_steps, tokens_per_step, len(devices))

    p_state = pretrain_step.replicate(state, pmap_devices, len(devices))
    del state
    train_step = pretrain_step.make_train_step(model_cfg, optimizer, schedule, config.seed,
                                               dropout=model_cfg.dropout > 0, devices=pmap_devices,
                                               grad_reduce=config.train.grad_reduce)
    eval_step = pretrain_step.make_eval_step(model_cfg, devices=pmap_devices)
    writer = run_outputs.tensorboard(workdir)

    def batch_for(k: int):
        rows = packing.global_batch(data.train, block_len, config.seed, k, config.train.batch_size,
                                    jax.process_index(), jax.process_count())
        return rows.reshape(len(devices), grad_accum, micro_rows, block_len)

    def save(kind: str, name: str = ""):
        host_state = ckpt_lib.unreplicate(p_state)
        if kind == "latest":
            ckpts.save_latest(step, host_state, ledger.to_dict(), extra)
        else:
            ckpts.save_milestone(name, host_state, ledger.to_dict(), {**extra, "step": step})
            if config.milestone_eval.val or config.milestone_eval.blimp_dir:
                from storyjax import evaluate
                record = {}
                if config.milestone_eval.val:  # pmapped: every process takes part
                    record["val_loss"] = eval_loss(eval_step, p_state.params, data.validation, block_len,
                                                   len(devices), config.eval_rows)
                record.update(evaluate.blimp_record(model_cfg, host_state.params, data.tokenizer,
                                                    config.milestone_eval.blimp_dir))
                evaluate.log_milestone_eval(workdir, writer, ledger, step, name, ledger.words_seen, record)
            if config.export_hf and distributed.is_primary():
                from storyjax import export
                export.export_milestone(workdir, name, model_cfg, host_state.params, data.tokenizer,
                                        os.path.join(workdir, "tokenizer"))

    preempted = preemption.SigtermWatch()
    pending, pending_ledger, t_last, tokens_since = None, None, time.time(), 0

    def check(step_no: int, metrics) -> dict:
        """Fetches a step's metrics, stops on non-finite ones, records the loss in `extra`."""
        m = {k: float(v[0]) for k, v in jax.device_get(metrics).items()}
        loss_finite = math.isfinite(m["loss"]) and math.isfinite(m["grad_norm"])
        if not (loss_finite and m.pop("state_finite")):
            raise ckpt_lib.diverged(ckpts, workdir, step_no, loss_finite, "--config.train.lr",
                                    f" (loss {m['loss']}, grad norm {m['grad_norm']})")
        if extra["loss_first"] is None:
            extra["loss_first"] = m["loss"]
        extra["loss_last"] = m["loss"]
        return m

    bar = tqdm(total=num_steps, initial=step, unit="step", dynamic_ncols=True,
               disable=not (config.progress_bar and distributed.is_primary()))
    try:
        while step < num_steps and not preempted:
            batch = batch_for(step)
            ledger.charge(tokens_per_step)
            p_state, metrics = train_step(p_state, batch, jnp.full((len(devices),), step, jnp.int32))
            step += 1
            if pending is not None:
                m = check(*pending)
                if pending[0] % config.log_every == 0 or pending[0] == 1:
                    now = time.time()
                    tok_s = tokens_since / max(now - t_last, 1e-9)
                    t_last, tokens_since = now, 0
                    run_outputs.log_scalars(writer, pending[0], {
                        **m, "tokens_per_s": tok_s, "words": pending_ledger["words_seen"],
                        "epochs": pending_ledger["epochs"]})
                    ledger_lib.append_jsonl(jsonl, "step", ledger_lib.Ledger.from_dict(pending_ledger),
                                            step=pending[0], loss=m["loss"])
                    bar.set_postfix(loss=f"{m['loss']:.3f}", tok_s=f"{tok_s:,.0f}",
                                    words=f"{pending_ledger['words_seen']:,.0f}")
            # The ledger as of this step, for logging once its metrics arrive.
            pending, pending_ledger = (step, metrics), ledger.to_dict()
            tokens_since += tokens_per_step
            bar.update(1)
            due = ledger.due_milestones(milestones)
            if due or step % config.checkpoint.every_steps == 0 or step == num_steps or preempted:
                check(*pending)  # blocks: never checkpoint an unverified state
                for words in due:
                    name = ledger_lib.milestone_name(words)
                    ledger.milestones_done.append(words)
                    save("milestone", name)
                    ledger_lib.append_jsonl(jsonl, "milestone", ledger, step=step, name=name)
                save("latest")
            if config.eval_every and step % config.eval_every == 0:
                val = eval_loss(eval_step, p_state.params, data.validation, block_len, len(devices),
                                config.eval_rows)
                run_outputs.log_scalars(writer, step, {"val_loss": val})
        if pending is not None:
            check(*pending)
        ckpts.wait()
        if preempted:
            ledger_lib.append_jsonl(jsonl, "preempted", ledger, step=step)
            raise preemption.Preempted(f"SIGTERM: checkpoint of step {step} written to {workdir}/latest; "
                                       "rerun the same command to resume.")
    finally:
        bar.close()
        preempted.close()
        ckpts.close()
        writer.close()

    val = eval_loss(eval_step, p_state.params, data.validation, block_len, len(devices), config.eval_rows)
    params = ckpt_lib.unreplicate(p_state.params)
    ledger_lib.append_jsonl(jsonl, "end", ledger, step=step, val_loss=val)
    summary = {
        "job": "pretrain", "steps": step, "tokens": ledger.tokens_seen, "words": ledger.words_seen,
        "epochs": ledger.epochs, "tokens_per_word": ledger.tokens_per_word,
        "loss_first": extra["loss_first"], "loss_last": extra["loss_last"], "val_loss": val,
        "val_ppl": math.exp(val), "checkpoints": ckpts.milestones(), "latest_step": step,
        "num_params": model_lib.count_params(params), "param_checksum": run_outputs.param_checksum(params),
    }
    run_outputs.write_summary(workdir, summary)
    return summary
