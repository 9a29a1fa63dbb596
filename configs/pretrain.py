"""Pretraining configs: `--config=configs/pretrain.py[:PRESET]`, PRESET in {tiny, gpt2_small}.

tiny (default; CPU, minutes, the embedded `tales` corpus):
  python -m storyjax.main --config=configs/pretrain.py:tiny --workdir=/tmp/sj_tiny
  On Austen (real prose):
  python -m storyjax.main --config=configs/pretrain.py:tiny --config.data.name=text_files \
      --config.data.path=../shared/data/corpora/austen --workdir=/tmp/sj_austen
  Expect (8 fake CPU devices, ~2.5 min): loss 7.4 (ln 1536) → about 5.0, val_loss ≈ 4.9,
  milestones chck_100K ... chck_400K (≈478K words in 200 steps).

gpt2_small (the paper's recipe, arXiv 2509.15714; TPU/GPU):
  python -m storyjax.main --config=configs/pretrain.py:gpt2_small --config.data.name=babylm_100m \
      --workdir=gs://BUCKET/run
  12×768 GPT-2, vocab 16,000, 512-token blocks, 256 blocks (131,072 tokens) per step, AdamW 5e-4,
  1% warmup then linear decay, clip 1.0, bf16 compute, 10 epochs, BabyLM word milestones.
"""

import ml_collections


def get_config(preset: str = "tiny") -> ml_collections.ConfigDict:
    if preset not in ("tiny", "gpt2_small"):
        raise ValueError(f"unknown preset {preset!r}: use configs/pretrain.py:tiny or :gpt2_small.")
    paper = preset == "gpt2_small"
    c = ml_collections.ConfigDict()
    c.job = "pretrain"
    c.preset = preset
    c.seed = 0
    c.progress_bar = True
    c.log_every = 10 if not paper else 50
    c.eval_every = 0          # steps between validation losses (0: only at the end)
    c.eval_rows = 64 if not paper else 1024  # validation blocks per evaluation
    # A transformers GPT-2 folder to start from (its shape and tokenizer replace `model`/`tokenizer`).
    c.init_from_hf = ""
    c.export_hf = paper          # also write each milestone as a transformers folder, WORKDIR/hf/chck_N
    # At each milestone: validation loss and/or BLiMP accuracy on a directory of minimal pairs, into
    # WORKDIR/milestone_eval.jsonl and TensorBoard.
    c.milestone_eval = ml_collections.ConfigDict(dict(val=True, blimp_dir=""))

    c.model = ml_collections.ConfigDict(dict(
        preset=preset, num_layers=0, d_model=0, num_heads=0, max_len=0,  # 0: the preset's value
        dropout=0.1, compute_dtype="bfloat16" if paper else "float32",
        # auto: cuDNN flash attention where it compiles (GPU, bf16) and attention dropout is off (dropout=0);
        # xla: einsum attention (with dropout); cudnn: insist on cuDNN (needs dropout=0).
        attention="auto"))
    c.tokenizer = ml_collections.ConfigDict(dict(vocab_size=16_000 if paper else 1_536, max_lines=2_000_000))
    c.data = ml_collections.ConfigDict(dict(
        name="babylm_100m" if paper else "tales", path="", tfds_dir="~/tensorflow_datasets",
        validation_files=(), validation_fraction=0.05, unwrap_lines=True, on_bad_file="error",
        num_docs=20_000, seed=0, register_checksums=False))
    c.train = ml_collections.ConfigDict(dict(
        seq_len=0,                # 0: the model context
        # grad_accum 0: the fewest micro-batches whose compiled step fits the device's memory (XLA's plan);
        # device_memory_gb 0: what the device reports (plan for another device by giving its GiB)
        batch_size=256 if paper else 32, grad_accum=0 if paper else 1, device_memory_gb=0.0,
        num_steps=0 if paper else 200, num_epochs=10.0 if paper else 0.0, max_words=0,
        lr=5e-4 if paper else 2e-3, warmup_frac=0.01 if paper else 0.05,
        b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, grad_clip=1.0,
        grad_reduce="mean"))      # "ordered": bit-identical whatever the split of devices over hosts
    c.ledger = ml_collections.ConfigDict(dict(
        max_epochs=10.0,          # BabyLM's cap; 0 lifts it
        milestones=() if paper else (100_000, 200_000, 300_000, 400_000, 500_000)))  # (): BabyLM schedule
    # Multi-host: coordinator "host:port" + num_processes + process_id, or auto=True on TPU pods / SLURM;
    # local_devices: use the first N devices of each process (0: all).
    c.distributed = ml_collections.ConfigDict(dict(coordinator="", num_processes=0, process_id=0, auto=False,
                                                   timeout_s=300, local_devices=0))
    c.checkpoint = ml_collections.ConfigDict(dict(every_steps=1000 if paper else 25, keep=2))
    return c
