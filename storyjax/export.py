"""Hugging Face interop: students out as transformers GPT-2 folders, GPT-2 folders in as students.

Export: `python -m storyjax.export --checkpoint=RUN[/milestones/chck_N] --out=DIR` writes `config.json`,
`model.safetensors` and the tokenizer files (`tokenizer.json`, `tokenizer_config.json`,
`special_tokens_map.json`), which `AutoModelForCausalLM.from_pretrained(DIR)` and
`AutoTokenizer.from_pretrained(DIR)` load; the BabyLM evaluation pipelines take such folders. Runs can
export every milestone on their own (`export_hf=True`, into WORKDIR/hf/chck_N).

Import: `load_hf(DIR)` reads a transformers GPT-2 folder (safetensors weights, `tokenizer.json`) as
(model config, params, tokenizer); `import_as_run` turns it into a storyjax run folder so an interactive
run can start from it (`--config.init_from_hf=DIR`).

The student's parameter names are HF GPT-2's and flax's Dense kernel is [in, out] like GPT-2's Conv1D, so
conversion is renaming. A SentencePiece tokenizer becomes a `tokenizers` BPE with byte fallback: merges
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
import numpy as np

from storyjax import checkpoint as ckpt_lib
from storyjax import model as model_lib
from storyjax import tokenizer as tokenizer_lib

WEIGHTS = "model.safetensors"
_LAYER_NORM = {"weight": "scale", "bias": "bias"}
_DENSE = {"weight": "kernel", "bias": "bias"}
_PER_LAYER = {"ln_1": _LAYER_NORM, "ln_2": _LAYER_NORM, "attn.c_attn": _DENSE, "attn.c_proj": _DENSE,
              "mlp.c_fc": _DENSE, "mlp.c_proj": _DENSE}


def hf_names(cfg: model_lib.ModelConfig) -> dict[str, tuple[str, ...]]:
    """transformers GPT2LMHeadModel tensor name → path in the student's parameter tree."""
    names = {"transformer.wte.weight": ("wte", "embedding"), "transformer.wpe.weight": ("wpe", "embedding"),
             "transformer.ln_f.weight": ("ln_f", "scale"), "transformer.ln_f.bias": ("ln_f", "bias")}
    for i in range(cfg.num_layers):
        for module, leaves in _PER_LAYER.items():
            for hf_leaf, leaf in leaves.items():
                names[f"transformer.h.{i}.{module}.{hf_leaf}"] = (f"h_{i}", *module.split("."), leaf)
    return names


def _get(tree, path):
    for key in path:
        tree = tree[key]
    return tree


def to_hf_tensors(cfg: model_lib.ModelConfig, params) -> dict[str, np.ndarray]:
    # The output embedding is tied to wte: transformers re-ties it on load, so it is not stored.
    return {name: np.ascontiguousarray(np.asarray(_get(params, path), np.float32))
            for name, path in hf_names(cfg).items()}


def from_hf_tensors(cfg: model_lib.ModelConfig, tensors: dict[str, np.ndarray], source: str):
    """The student's parameter tree from transformers tensors, shapes checked against `cfg`."""
    # GPT2Model checkpoints (the original `gpt2` upload) lack the `transformer.` prefix.
    tensors = {(k if k.startswith(("transformer.", "lm_head.")) else "transformer." + k): v
               for k, v in tensors.items()}
    expected = jax.eval_shape(lambda: model_lib.init_params(cfg, jax.random.key(0)))
    names = hf_names(cfg)
    missing = sorted(set(names) - set(tensors))
    if missing:
        raise ValueError(f"{source} lacks {len(missing)} GPT-2 tensors (first: {missing[:3]}); it is not a "
                         "transformers GPT2LMHeadModel of the shape its config.json gives.")
    if "lm_head.weight" in tensors and not np.array_equal(tensors["lm_head.weight"],
                                                          tensors["transformer.wte.weight"]):
        raise ValueError(f"{source} has an output embedding (lm_head) different from its input embedding; "
                         "the student ties them (GPT-2's tie_word_embeddings=True).")
    params: dict = {}
    for name, path in names.items():
        value = np.asarray(tensors[name], np.float32)
        want = _get(expected, path).shape
        if value.shape != want:
            raise ValueError(f"{source}: {name} has shape {value.shape}, the config implies {want}.")
        node = params
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return params


def hf_config(cfg: model_lib.ModelConfig, tok) -> dict:
    return {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": cfg.vocab_size,
        "n_positions": cfg.max_len, "n_embd": cfg.d_model, "n_layer": cfg.num_layers, "n_head": cfg.num_heads,
        "n_inner": cfg.mlp_ratio * cfg.d_model, "activation_function": "gelu_new",
        "resid_pdrop": cfg.dropout, "embd_pdrop": cfg.dropout, "attn_pdrop": cfg.dropout,
        "layer_norm_epsilon": cfg.layer_norm_eps, "initializer_range": cfg.init_std,
        "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False, "reorder_and_upcast_attn": False,
        "tie_word_embeddings": True, "use_cache": True,
        "bos_token_id": tok.bos_id, "eos_token_id": tok.eos_id, "pad_token_id": tok.pad_id,
        "dtype": "float32",
    }


def model_config_from_hf(config: dict, source: str, compute_dtype: str = "float32",
                         dropout: float = 0.0) -> model_lib.ModelConfig:
    """The student's shape from a GPT-2 `config.json`, refusing variants the student does not compute."""
    if config.get("model_type") != "gpt2":
        raise ValueError(f"{source}/config.json has model_type={config.get('model_type')!r}; only GPT-2 "
                         "checkpoints (model_type 'gpt2') can be imported.")
    unsupported = {
        "activation_function": (config.get("activation_function", "gelu_new"), ("gelu_new", "gelu_pytorch_tanh")),
        "scale_attn_weights": (config.get("scale_attn_weights", True), (True,)),
        "scale_attn_by_inverse_layer_idx": (config.get("scale_attn_by_inverse_layer_idx", False), (False,)),
        "tie_word_embeddings": (config.get("tie_word_embeddings", True), (True,)),
        "add_cross_attention": (config.get("add_cross_attention", False), (False,)),
    }
    bad = [f"{k}={v!r} (supported: {ok})" for k, (v, ok) in unsupported.items() if v not in ok]
    n_embd = config["n_embd"]
    inner = config.get("n_inner") or 4 * n_embd
    if inner % n_embd:
        bad.append(f"n_inner={inner} (a multiple of n_embd={n_embd})")
    if bad:
        raise ValueError(f"{source}/config.json describes a GPT-2 variant the student does not compute: "
                         + "; ".join(bad) + ".")
    return model_lib.ModelConfig(
        vocab_size=config["vocab_size"], num_layers=config["n_layer"], d_model=n_embd,
        num_heads=config["n_head"], max_len=config["n_positions"], mlp_ratio=inner // n_embd, dropout=dropout,
        init_std=config.get("initializer_range", 0.02), layer_norm_eps=config.get("layer_norm_epsilon", 1e-5),
        compute_dtype=compute_dtype).validate()


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
    cfg, params, tok, tok_dir, _, _ = ckpt_lib.resolve_student(checkpoint)
    return write_hf(out_dir, cfg, jax.device_get(params), tok, tok_dir,
                    {"storyjax_checkpoint": os.path.abspath(checkpoint)})


def export_milestone(workdir: str, name: str, cfg: model_lib.ModelConfig, params, tok, tok_dir: str) -> None:
    """WORKDIR/hf/chck_N; a rerun that reaches the milestone again keeps the first export, as its checkpoint."""
    out = os.path.join(workdir, "hf", name)
    if not os.path.exists(out):
        write_hf(out, cfg, params, tok, tok_dir, {"storyjax_checkpoint": os.path.join(workdir, "milestones", name)})


# --- import -------------------------------------------------------------------------------------------

def _read_json(path: str) -> dict:
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _special_ids(hf_dir: str, backend, config: dict) -> dict:
    files = {f: _read_json(os.path.join(hf_dir, f)) for f in ("special_tokens_map.json", "tokenizer_config.json")}
    names = {}
    for content in files.values():
        for key, value in content.items():
            if key in ("bos_token", "eos_token", "pad_token", "unk_token") and value:
                names.setdefault(key, value["content"] if isinstance(value, dict) else value)
    ids = {}
    for role in ("bos", "eos", "pad", "unk"):
        name = names.get(f"{role}_token")
        token_id = backend.token_to_id(name) if name else None
        ids[role] = token_id if token_id is not None else config.get(f"{role}_token_id")
    if ids["eos"] is None:
        ids["eos"] = next((backend.token_to_id(t) for t in ("</s>", "<|endoftext|>")
                           if backend.token_to_id(t) is not None), None)
    if ids["eos"] is None:
        raise ValueError(f"{hf_dir} names no end-of-text token (eos_token in special_tokens_map.json or "
                         "eos_token_id in config.json); the student needs one to end stories.")
    # GPT-2 has no pad token: padding is always masked, so the end-of-text id serves.
    out = {f"{role}_id": int(ids[role] if ids[role] is not None else ids["eos"]) for role in ids}
    return {**out, "split_special_tokens": bool(files["tokenizer_config.json"].get("split_special_tokens", False))}


def _read_tensors(hf_dir: str) -> dict[str, np.ndarray]:
    from safetensors import safe_open
    path = os.path.join(hf_dir, WEIGHTS)
    if not os.path.exists(path):
        other = [f for f in ("pytorch_model.bin", "model.safetensors.index.json") if os.path.exists(os.path.join(hf_dir, f))]
        raise ValueError(f"{hf_dir} has no {WEIGHTS}" + (f" (it has {other})" if other else "") + "; save it with "
                         "transformers' save_pretrained(DIR, safe_serialization=True) as one file and import that.")
    out = {}
    with safe_open(path, framework="flax") as f:  # flax: bfloat16/float16 files load too
        for name in f.keys():
            out[name] = np.asarray(f.get_tensor(name), np.float32)
    return out


def load_hf(hf_dir: str, compute_dtype: str = "float32", dropout: float = 0.0):
    """(model config, params, tokenizer, tokenizer.json bytes) of a transformers GPT-2 folder."""
    hf_dir = os.path.abspath(hf_dir)
    config = _read_json(os.path.join(hf_dir, "config.json"))
    if not config:
        raise ValueError(f"{hf_dir} has no config.json; point init_from_hf at a transformers model folder.")
    cfg = model_config_from_hf(config, hf_dir, compute_dtype, dropout)
    params = from_hf_tensors(cfg, _read_tensors(hf_dir), hf_dir)
    tok_path = os.path.join(hf_dir, "tokenizer.json")
    if not os.path.exists(tok_path):
        raise ValueError(f"{hf_dir} has no tokenizer.json (the fast-tokenizer file); save the tokenizer with "
                         "AutoTokenizer.from_pretrained(...).save_pretrained(DIR) to write one.")
    with open(tok_path, "rb") as f:
        json_bytes = f.read()
    import tokenizers
    special = _special_ids(hf_dir, tokenizers.Tokenizer.from_str(json_bytes.decode("utf-8")), config)
    tok = tokenizer_lib.hf_from_bytes(json_bytes, special)
    if tok.vocab_size > cfg.vocab_size:
        raise ValueError(f"{hf_dir}: the tokenizer has {tok.vocab_size} tokens, the model's embedding only "
                         f"{cfg.vocab_size} rows.")
    return cfg, params, tok, json_bytes


def install_tokenizer(tok_dir: str, tok: tokenizer_lib.HFTokenizer, json_bytes: bytes, source: str) -> None:
    tokenizer_lib.save_hf(tok_dir, json_bytes, {
        "kind": "hf", "vocab_size": tok.vocab_size, "sha256": tok.sha256, "bos_id": tok.bos_id,
        "pad_id": tok.pad_id, "eos_id": tok.eos_id, "unk_id": tok.unk_id,
        "split_special_tokens": tok.backend.encode_special_tokens, "imported_from": source})


def import_as_run(hf_dir: str, run_dir: str) -> str:
    """A storyjax run folder (run_meta.json, tokenizer/, latest/0) holding the transformers checkpoint, so
    everything that starts from a pretraining run can start from it. Rerunning with the same folder reuses
    it; a different checkpoint in the same place is refused."""
    cfg, params, tok, json_bytes = load_hf(hf_dir)
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
