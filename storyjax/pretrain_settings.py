"""A pretraining run's settings (configs/pretrain.py, which says what each does), parsed once into frozen
records at the job's entry; the loop, the optimizer, the schedule, the corpus and the model read these."""

from __future__ import annotations

import dataclasses

from storyjax import settings_record
from storyjax.data import DataSettings

ENTRY_KEYS = ("job", "preset")  # read by `storyjax.main`, not by the run


@dataclasses.dataclass(frozen=True)
class ModelSection:
    preset: str = "tiny"
    num_layers: int = 0             # 0: the preset's value (each of these four)
    d_model: int = 0
    num_heads: int = 0
    max_len: int = 0
    dropout: float = 0.1
    compute_dtype: str = "float32"
    attention: str = "auto"         # auto | xla | cudnn


@dataclasses.dataclass(frozen=True)
class TokenizerSection:
    vocab_size: int = 1_536
    max_lines: int = 2_000_000


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    seq_len: int = 0                # 0: the model context
    batch_size: int = 32
    grad_accum: int = 1             # 0: the fewest micro-batches whose compiled step fits the device
    device_memory_gb: float = 0.0   # 0: what the device reports
    num_steps: int = 0
    num_epochs: float = 0.0
    max_words: int = 0
    lr: float = 2e-3
    warmup_frac: float = 0.05
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    grad_reduce: str = "mean"       # mean | ordered


@dataclasses.dataclass(frozen=True)
class LedgerSection:
    max_epochs: float = 10.0        # BabyLM's cap; 0 lifts it
    milestones: tuple = ()          # words; (): BabyLM's schedule


@dataclasses.dataclass(frozen=True)
class DistributedSettings:
    coordinator: str = ""           # host:port of process 0
    num_processes: int = 0
    process_id: int = 0
    auto: bool = False              # TPU pods / SLURM: jax finds the processes itself
    timeout_s: float = 300
    local_devices: int = 0          # the first N devices of each process (0: all)


@dataclasses.dataclass(frozen=True)
class CheckpointSection:
    every_steps: int = 25
    keep: int = 2


@dataclasses.dataclass(frozen=True)
class PretrainMilestoneEval:
    val: bool = True
    blimp_dir: str = ""


@dataclasses.dataclass(frozen=True)
class PretrainSettings:
    seed: int = 0
    progress_bar: bool = True
    log_every: int = 10
    eval_every: int = 0             # steps between validation losses (0: only at the end)
    eval_rows: int = 64
    init_from_hf: str = ""
    export_hf: bool = False
    milestone_eval: PretrainMilestoneEval = PretrainMilestoneEval()
    model: ModelSection = ModelSection()
    tokenizer: TokenizerSection = TokenizerSection()
    data: DataSettings = DataSettings()
    train: TrainSettings = TrainSettings()
    ledger: LedgerSection = LedgerSection()
    distributed: DistributedSettings = DistributedSettings()
    checkpoint: CheckpointSection = CheckpointSection()

    @classmethod
    def from_config(cls, config) -> "PretrainSettings":
        """The record of a pretraining config (not yet checked: `pretrain.parse` checks it)."""
        return settings_record.parse(cls, config, "", skip=ENTRY_KEYS)
