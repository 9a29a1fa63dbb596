"""The transformers GPT-2 format, both ways: tensor names and shapes, the config.json mapping, and reading
a GPT-2 folder (safetensors weights, config.json, tokenizer.json) as (model config, params, tokenizer).
`storyjax.student.from_hf` loads a student through it; `storyjax.export` writes folders with it.

The student's parameter names are HF GPT-2's and flax's Dense kernel is [in, out] like GPT-2's Conv1D, so
conversion is renaming.
"""

from __future__ import annotations

import json
import os

import jax
import numpy as np

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


# --- reading a folder ---------------------------------------------------------------------------------

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
