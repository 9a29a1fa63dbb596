"""`python -m storyjax.smoke [--preset=gpt2_small] [--attention=cudnn] [--out=FILE.json]`: the first minute
of a GPU call, every device path once, stopping at the first failure.

Checks, in order: one pretraining step (bfloat16 at gpt2_small, the attention named: cuDNN's fused
attention on a GPU), one rollout, one REINFORCE step on it, and a tiny random-weights JAX teacher (written
as a transformers folder, loaded by the teacher's own loader) grading stories. Each prints
"ok NAME (S s)" and is written to `--out` as it finishes; the first failure prints "FAILED NAME: why" and
exits 1, so a GPU call spends no more time on a stack that does not run.
"""

from __future__ import annotations

import json
import math
import sys
import time
import traceback

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from storyjax import model as model_lib
from storyjax import pretrain_step, reinforce, sampler
from storyjax import reward as reward_lib
from storyjax import rollout as rollout_lib
from storyjax import bench_teacher
from storyjax.bench_compiled import RL, TRAIN
from storyjax.bench_pretrain import SHAPES, student_config
from storyjax.pretrain_settings import TrainSettings

flags.DEFINE_enum("preset", "gpt2_small", sorted(SHAPES), "Student shape.")
flags.DEFINE_enum("attention", "auto", ["auto", "xla", "cudnn"], "Pretraining attention (model.attention); "
                  "cudnn fails where cuDNN's fused attention does not run.")
flags.DEFINE_integer("batch", 8, "Sequences in the pretraining step.")
flags.DEFINE_integer("stories", 32, "Stories in the rollout, the REINFORCE step and the teacher's grading.")
flags.DEFINE_string("out", "", "Write each check's result to this JSON file as it finishes.")


def pretrain_check(shape: dict, attention: str, batch: int) -> dict:
    cfg = student_config(shape, attention)
    train_cfg = TrainSettings(**TRAIN)
    opt = pretrain_step.make_optimizer(train_cfg, 100)
    mesh = pretrain_step.mesh_of(jax.local_devices()[:1])
    params = model_lib.init_params(cfg, jax.random.key(0))
    state = pretrain_step.replicate(pretrain_step.TrainState(params, opt.init(params)), mesh)
    step = pretrain_step.make_train_step(cfg, opt, pretrain_step.lr_schedule(train_cfg, 100), 0, mesh, dropout=False)
    tokens = np.random.default_rng(0).integers(0, cfg.vocab_size, (1, batch, shape["seq"]), dtype=np.int32)
    tokens = pretrain_step.global_rows(tokens, mesh, pretrain_step.P(None, pretrain_step.AXIS))
    _, metrics = step(state, tokens, pretrain_step.replicate(np.int32(1), mesh))
    m = {k: float(v) for k, v in pretrain_step.to_host(metrics).items()}
    if not (math.isfinite(m["loss"]) and m["state_finite"]):
        raise FloatingPointError(f"non-finite pretraining step: {m}")
    used = "cudnn" if model_lib.use_cudnn_attention(cfg, pretrain_step.forward_len(shape["seq"]), True) else "xla"
    return {"loss": m["loss"], "attention": used}


def rollout_check(shape: dict, stories: int, box: dict) -> dict:
    """One rollout of `stories` stories; what the REINFORCE check needs is left in `box`."""
    cfg = student_config(shape)
    params = model_lib.init_params(cfg, jax.random.key(0))
    P, N = shape["prompt_len"], shape["new_tokens"]
    prompt = jax.random.randint(jax.random.key(1), (stories, P), 4, cfg.vocab_size)
    valid = jnp.ones((stories, P), bool)
    out = jax.block_until_ready(sampler.sample(cfg, params, prompt, valid, jax.random.key(2), jnp.float32(1.0),
                                               jnp.int32(0), jnp.float32(1.0), max_new_tokens=N, eos_id=2, pad_id=1))
    box.update(cfg=cfg, params=params, prompt=prompt, valid=valid, out=out)
    return {"mean_new_tokens": float(np.asarray(out.mask_BxN).sum(1).mean())}


def reinforce_check(box: dict) -> dict:
    rl_cfg = reinforce.RLConfig(**RL)
    opt = reinforce.make_optimizer(rl_cfg)
    step = reinforce.make_step(box["cfg"], rl_cfg, opt)
    out = box["out"]
    scores = np.asarray(jax.random.randint(jax.random.key(3), (out.mask_BxN.shape[0], 3), 0, 4), np.float32)
    rewards = reward_lib.story_rewards(reward_lib.RewardConfig(), scores, np.asarray(out.mask_BxN.sum(1)))
    _, metrics = step(reinforce.init_state(box["params"], opt, rl_cfg), box["params"],
                      rollout_lib.make(box["prompt"], box["valid"], out, rewards.reward_B))
    loss = float(jax.device_get(metrics["loss"]))
    if not math.isfinite(loss):
        raise FloatingPointError(f"non-finite REINFORCE loss {loss}")
    return {"loss": loss}


def teacher_check(stories: int) -> dict:
    row = bench_teacher.random_jax_row(bench_teacher.RANDOM_SHAPES["tiny"], stories, prefix_len=64, story_len=40,
                                       batch=stories, repeats=1)
    return {k: row[k] for k in ("stories_per_s", "seconds") if k in row}


def run_checks(checks: list, out: str) -> bool:
    """Runs (name, fn) in order, writing each result; False at the first failure."""
    results = {"backend": jax.default_backend(), "devices": [d.device_kind for d in jax.local_devices()],
               "jax": jax.__version__, "checks": {}}
    for name, fn in checks:
        t0 = time.perf_counter()
        try:
            results["checks"][name] = {"ok": True, **fn(), "wall_s": time.perf_counter() - t0}
            print(f"ok {name} ({time.perf_counter() - t0:.1f} s): {results['checks'][name]}", flush=True)
        except Exception as e:  # noqa: BLE001 - the first failure is the answer
            results["checks"][name] = {"ok": False, "error": f"{type(e).__name__}: {e}"[:2000]}
            print(f"FAILED {name}: {type(e).__name__}: {e}", flush=True)
            traceback.print_exc()
        if out:
            with open(out, "w") as f:
                json.dump(results, f, indent=2)
        if not results["checks"][name]["ok"]:
            return False
    return True


def main(argv):
    del argv
    FLAGS = flags.FLAGS
    shape = SHAPES[FLAGS.preset]
    box = {}
    checks = [("pretrain_step", lambda: pretrain_check(shape, FLAGS.attention, FLAGS.batch)),
              ("rollout", lambda: rollout_check(shape, FLAGS.stories, box)),
              ("reinforce_step", lambda: reinforce_check(box)),
              ("tiny_random_teacher", lambda: teacher_check(FLAGS.stories))]
    print(f"jax {jax.__version__} on {jax.default_backend()}: {[d.device_kind for d in jax.local_devices()]}",
          flush=True)
    sys.exit(0 if run_checks(checks, FLAGS.out) else 1)


if __name__ == "__main__":
    app.run(main)
