"""Hugging Face interop: students out as transformers GPT-2 folders, GPT-2 folders in as students.

Export: `python -m storyjax.export --checkpoint=RUN[/milestones/chck_N] --out=DIR` writes `config.json`,
`model.safetensors` and the tokenizer files (`tokenizer.json`, `tokenizer_config.json`,
`special_tokens_map.json`), which `AutoModelForCausalLM.from_pretrained(DIR)` and
`AutoTokenizer.from_pretrained(DIR)` load; the BabyLM evaluation pipelines take such folders. Runs can
export every milestone on their own (`export_hf=True`, into WORKDIR/hf/chck_N).

Import: `storyjax.student.from_hf(DIR)` reads a transformers GPT-2 folder (the format: `hf_format.py`);
`import_as_run` turns it into a storyjax run folder so an interactive run can start from it
(`--config.init_from_hf=DIR`).

A SentencePiece tokenizer becomes a `tokenizers` BPE with byte fallback: merges
are read off the piece list (SentencePiece BPE merges the adjacent pair whose union has the best rank,
which is the piece order) and the dummy-prefix/whitespace rules become a normalizer.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile

import jax

from storyjax import checkpoint as ckpt_lib
from storyjax import student as student_lib
from storyjax.hf_format import WEIGHTS, hf_config, to_hf_tensors
from storyjax import model as model_lib
from storyjax import tokenizer as tokenizer_lib

# --- tokenizers ---------------------------------------------------------------------------------------

def spm_to_tokenizers_json(model_bytes: bytes) -> str:
    """A `tokenizers` file that encodes and decodes as the SentencePiece BPE model does.

    Encoding is exact except for text holding the literal string "<mask>" (SentencePiece matches its
    reserved symbol anywhere; here it is split out before normalization, which adds a space after it).
    Decoding is exact except for invalid UTF-8 byte runs: transformers' byte fallback writes one U+FFFD per
    byte of the run, SentencePiece keeps the bytes in it that are valid on their own.
    """
    from sentencepiece import sentencepiece_model_pb2
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(model_bytes)
    if proto.trainer_spec.model_type != sentencepiece_model_pb2.TrainerSpec.BPE:
        raise ValueError("only SentencePiece BPE models convert to a tokenizers BPE.")
    Piece = sentencepiece_model_pb2.ModelProto.SentencePiece
    vocab = {p.piece: i for i, p in enumerate(proto.pieces)}
    normal = {p.piece: i for i, p in enumerate(proto.pieces) if p.type == Piece.NORMAL}
    merges = sorted((rank, normal[piece[:k]], normal[piece[k:]], piece[:k], piece[k:])
                    for piece, rank in normal.items() for k in range(1, len(piece))
                    if piece[:k] in normal and piece[k:] in normal)
    unk = next(p.piece for p in proto.pieces if p.type == Piece.UNKNOWN)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[(a, b) for *_, a, b in merges], unk_token=unk,
                               byte_fallback=True, fuse_unk=True))
    spec = proto.normalizer_spec
    steps = [normalizers.Prepend("▁")] if spec.add_dummy_prefix else []
    tok.normalizer = normalizers.Sequence(steps + [normalizers.Replace(" ", "▁")])
    # SentencePiece never lets a piece span a space: each ▁ starts a new word.
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never", split=True)
    strip = [decoders.Strip(" ", 1, 0)] if spec.add_dummy_prefix else []
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), *strip])
    tok.add_special_tokens([AddedToken(p.piece, special=True, normalized=False) for p in proto.pieces
                            if p.type in (Piece.CONTROL, Piece.UNKNOWN, Piece.USER_DEFINED)])
    return tok.to_str(pretty=False)


def _tokenizer_files(tok, json_text: str, max_len: int) -> dict[str, str]:
    token = tok.backend.id_to_token if isinstance(tok, tokenizer_lib.HFTokenizer) else tok.processor.id_to_piece
    specials = {"bos_token": token(tok.bos_id), "eos_token": token(tok.eos_id), "unk_token": token(tok.unk_id),
                "pad_token": token(tok.pad_id)}
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": max_len,
              "add_bos_token": False, "add_eos_token": False, "clean_up_tokenization_spaces": False, **specials}
    # SentencePiece reads "</s>" in text as characters, not as the control token: so must transformers.
    config["split_special_tokens"] = (tok.backend.encode_special_tokens if isinstance(tok, tokenizer_lib.HFTokenizer)
                                      else True)
    return {"tokenizer.json": json_text, "tokenizer_config.json": json.dumps(config, indent=2),
            "special_tokens_map.json": json.dumps(specials, indent=2)}


def tokenizer_json(tok, tok_dir: str) -> str:
    if isinstance(tok, tokenizer_lib.HFTokenizer):
        with open(os.path.join(tok_dir, tokenizer_lib.HF_FILE), encoding="utf-8") as f:
            return f.read()
    with open(os.path.join(tok_dir, tokenizer_lib.MODEL_FILE), "rb") as f:
        return spm_to_tokenizers_json(f.read())


# --- export -------------------------------------------------------------------------------------------

def write_hf(out_dir: str, cfg: model_lib.ModelConfig, params, tok, tok_dir: str, provenance: dict) -> str:
    """Writes the transformers folder into a temporary sibling and renames it: never a half-written export."""
    from safetensors.numpy import save_file
    out_dir = os.path.abspath(out_dir)
    if os.path.exists(out_dir):
        raise ValueError(f"--out={out_dir} already exists; export into a new folder (nothing was overwritten).")
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".export-", dir=parent)
    try:
        save_file(to_hf_tensors(cfg, params), os.path.join(tmp, WEIGHTS),
                  metadata={"format": "pt", **{k: str(v) for k, v in provenance.items()}})
        files = {"config.json": json.dumps(hf_config(cfg, tok), indent=2),
                 **_tokenizer_files(tok, tokenizer_json(tok, tok_dir), cfg.max_len)}
        for name, text in files.items():
            with open(os.path.join(tmp, name), "w", encoding="utf-8") as f:
                f.write(text)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def export_checkpoint(checkpoint: str, out_dir: str) -> str:
    """A run's latest checkpoint, or one of its milestones, as a transformers GPT-2 folder."""
    student = student_lib.from_run(checkpoint)
    return write_hf(out_dir, student.model_cfg, jax.device_get(student.params), student.tok, student.tok_dir,
                    {"storyjax_checkpoint": os.path.abspath(checkpoint)})


def export_milestone(workdir: str, name: str, cfg: model_lib.ModelConfig, params, tok, tok_dir: str) -> None:
    """WORKDIR/hf/chck_N; a rerun that reaches the milestone again keeps the first export, as its checkpoint."""
    out = os.path.join(workdir, "hf", name)
    if not os.path.exists(out):
        write_hf(out, cfg, params, tok, tok_dir, {"storyjax_checkpoint": os.path.join(workdir, "milestones", name)})


# --- import -------------------------------------------------------------------------------------------

def install_tokenizer(tok_dir: str, tok: tokenizer_lib.HFTokenizer, json_bytes: bytes, source: str) -> None:
    tokenizer_lib.save_hf(tok_dir, json_bytes, {
        "kind": "hf", "vocab_size": tok.vocab_size, "sha256": tok.sha256, "bos_id": tok.bos_id,
        "pad_id": tok.pad_id, "eos_id": tok.eos_id, "unk_id": tok.unk_id,
        "split_special_tokens": tok.backend.encode_special_tokens, "imported_from": source})


def import_as_run(hf_dir: str, run_dir: str) -> str:
    """A storyjax run folder (run_meta.json, tokenizer/, latest/0) holding the transformers checkpoint, so
    everything that starts from a pretraining run can start from it. Rerunning with the same folder reuses
    it; a different checkpoint in the same place is refused."""
    student = student_lib.from_hf(hf_dir)
    cfg, params, tok, json_bytes = student.model_cfg, student.params, student.tok, student.tokenizer_json
    digest = hashlib.sha256()
    with open(os.path.join(os.path.abspath(hf_dir), WEIGHTS), "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    meta = {"model": cfg.shape_dict(),
            "tokenizer_sha256": tok.sha256, "imported_from_hf": os.path.abspath(hf_dir),
            "weights_sha256": digest.hexdigest()}
    ckpt_lib.check_run_meta(run_dir, meta)
    install_tokenizer(os.path.join(run_dir, "tokenizer"), tok, json_bytes, os.path.abspath(hf_dir))
    ckpts = ckpt_lib.Checkpoints(run_dir)
    try:
        if ckpts.latest_step() is None:
            ckpts.save_latest(0, {"params": params}, {}, {"imported_from_hf": os.path.abspath(hf_dir)})
    finally:
        ckpts.close()
    return run_dir


def main(argv):
    del argv
    from absl import flags
    out = export_checkpoint(flags.FLAGS.checkpoint, flags.FLAGS.out)
    print(f"Exported {flags.FLAGS.checkpoint} to {out}")


if __name__ == "__main__":
    from absl import app, flags
    flags.DEFINE_string("checkpoint", None, "A run's workdir (latest checkpoint) or RUN/milestones/chck_N.")
    flags.DEFINE_string("out", None, "New folder for the transformers model.")
    flags.mark_flags_as_required(["checkpoint", "out"])
    app.run(main)
