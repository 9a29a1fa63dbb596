import dataclasses

import jax
import pytest

from storyjax import memory_plan, pretrain, pretrain_step, profiling
from storyjax import model as M
from storyjax.pretrain_settings import PretrainSettings, TrainSettings

CFG = M.ModelConfig(vocab_size=256, num_layers=1, d_model=32, num_heads=2, max_len=64, dropout=0.0)


def test_choose_takes_the_fewest_micro_batches_that_fit_and_refuses_a_given_count_that_does_not():
    plan = lambda a: 100 // a  # bytes, shrinking with accumulation
    assert memory_plan.choose(plan, 8, None) == (1, 0)  # a CPU reports no limit
    assert memory_plan.choose(plan, 8, 40) == (4, 25)   # 25 <= 0.9 * 40 < 50
    assert memory_plan.choose(plan, 8, 200, fixed=1) == (1, 100)
    with pytest.raises(ValueError, match=r"grad_accum=1: .* set --config.train.grad_accum=4 or 0"):
        memory_plan.choose(plan, 8, 40, fixed=1)
    with pytest.raises(ValueError, match="no gradient accumulation fits"):
        memory_plan.choose(plan, 8, 10)


def test_the_plan_of_the_real_step_shrinks_with_accumulation_and_picks_a_count_that_fits():
    train = TrainSettings(lr=1e-3, warmup_frac=0.1, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0,
                             grad_clip=1.0, batch_size=32, grad_accum=0, device_memory_gb=0.0,
                             grad_reduce="mean")
    config = PretrainSettings(train=train, seed=0)
    opt = pretrain_step.make_optimizer(train, 10)
    mesh = pretrain_step.mesh_of(jax.local_devices()[:1])
    sched = pretrain_step.lr_schedule(train, 10)

    def plan(a):
        step = pretrain_step.make_train_step(CFG, opt, sched, 0, mesh, dropout=False)
        return profiling.planned_bytes(step.lower(*pretrain_step.abstract_args(CFG, opt, mesh, a, 32 // a, 64)).compile())

    one, eight = plan(1), plan(8)
    assert eight < 0.6 * one
    assert pretrain.plan_grad_accum(config, CFG, opt, sched, mesh, 64) == 1  # no limit known on CPU
    train = dataclasses.replace(train, device_memory_gb=(one + eight) / 2 / 0.9 / 2**30)  # room for 8, not 1
    config = dataclasses.replace(config, train=train)
    chosen = pretrain.plan_grad_accum(config, CFG, opt, sched, mesh, 64)
    assert 1 < chosen <= 8 and plan(chosen) <= 0.9 * train.device_memory_gb * 2**30
    config = dataclasses.replace(config, train=dataclasses.replace(train, grad_accum=1))
    with pytest.raises(ValueError, match="train.grad_accum=1: the compiled step plans"):
        pretrain.plan_grad_accum(config, CFG, opt, sched, mesh, 64)
