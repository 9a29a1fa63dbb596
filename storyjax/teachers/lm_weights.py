"""Teacher weights from a Hugging Face folder (config.json + safetensors) or one GGUF file, as the params
pytree of `teachers.lm`, with the model's own tokenizer and chat template.

GGUF notes: shapes are stored fastest-axis first (numpy sees them reversed, i.e. the Hugging Face
[out, in] layout, once dequantized); llama.cpp's converter permutes the rows of Q and K of
Llama-architecture files for its interleaved RoPE, which is undone here so one rotate-half RoPE serves
both sources; a `rope_freqs` tensor holds Llama-3's long-context frequency factors.
"""

from __future__ import annotations

import glob
import json
import os

import jax.numpy as jnp
import numpy as np
from absl import logging

from storyjax.teachers import lm

_HF_LAYER = {  # ours: (Hugging Face name under model.layers.{i}., transpose)
    "attn_norm": ("input_layernorm.weight", False), "ffn_norm": ("post_attention_layernorm.weight", False),
    "wq": ("self_attn.q_proj.weight", True), "wk": ("self_attn.k_proj.weight", True),
    "wv": ("self_attn.v_proj.weight", True), "wo": ("self_attn.o_proj.weight", True),
    "bq": ("self_attn.q_proj.bias", False), "bk": ("self_attn.k_proj.bias", False),
    "bv": ("self_attn.v_proj.bias", False),
    "w_gate": ("mlp.gate_proj.weight", True), "w_up": ("mlp.up_proj.weight", True),
    "w_down": ("mlp.down_proj.weight", True),
}
_HF_GEMMA3 = {  # Gemma's "post_attention_layernorm" is a post-norm; its pre-MLP norm has its own name
    "ffn_norm": ("pre_feedforward_layernorm.weight", False), "post_attn_norm": ("post_attention_layernorm.weight", False),
    "post_ffn_norm": ("post_feedforward_layernorm.weight", False), "q_norm": ("self_attn.q_norm.weight", False),
    "k_norm": ("self_attn.k_norm.weight", False),
}
_GGUF_LAYER = {  # ours: GGUF name under blk.{i}.
    "attn_norm": "attn_norm.weight", "ffn_norm": "ffn_norm.weight", "wq": "attn_q.weight", "wk": "attn_k.weight",
    "wv": "attn_v.weight", "wo": "attn_output.weight", "bq": "attn_q.bias", "bk": "attn_k.bias",
    "bv": "attn_v.bias", "w_gate": "ffn_gate.weight", "w_up": "ffn_up.weight", "w_down": "ffn_down.weight",
    "post_attn_norm": "post_attention_norm.weight", "post_ffn_norm": "post_ffw_norm.weight",
    "q_norm": "attn_q_norm.weight", "k_norm": "attn_k_norm.weight",
}
_NORMS = ("attn_norm", "ffn_norm", "post_attn_norm", "post_ffn_norm", "q_norm", "k_norm")
_BIASES = ("bq", "bk", "bv")
_GEMMA_ONLY = ("post_attn_norm", "post_ffn_norm", "q_norm", "k_norm")


def load(path: str, compute_dtype: str = "float32"):
    """(LMConfig, params, tokenizer) of a teacher at `path`: a Hugging Face folder or a `.gguf` file."""
    if not path:
        raise ValueError("teacher.name='jax' needs --config.teacher.weights=PATH: a Hugging Face folder "
                         "(config.json, *.safetensors, tokenizer.json) or a .gguf file.")
    if not os.path.exists(path):
        raise ValueError(f"teacher.weights={path!r} does not exist; give a Hugging Face folder or a .gguf file.")
    if os.path.isfile(path) and path.endswith(".gguf"):
        return _load_gguf(path, compute_dtype)
    if os.path.isdir(path) and os.path.exists(os.path.join(path, "config.json")):
        return (*load_hf_params(path, compute_dtype), _tokenizer(path))
    raise ValueError(f"teacher.weights={path!r} is neither a .gguf file nor a folder with config.json.")


def _unpermute(w_OxI: np.ndarray, n_heads: int) -> np.ndarray:
    """Inverse of llama.cpp's Q/K row permutation (interleaved RoPE pairs → rotate-half halves)."""
    out, rest = w_OxI.shape[0], w_OxI.shape[1:]
    return w_OxI.reshape(n_heads, out // n_heads // 2, 2, *rest).swapaxes(1, 2).reshape(w_OxI.shape)


def _per_layer_rope(cfg: lm.LMConfig, global_inv, local_inv) -> np.ndarray:
    """[L, D/2]: each layer's RoPE frequencies (Gemma-3's sliding layers use their own base)."""
    sliding = np.asarray(cfg.sliding_layers or (False,) * cfg.num_layers)[:, None]
    return np.where(sliding, local_inv[None], global_inv[None]).astype(np.float32)


def _gemma3_fields(sliding_window: int, sliding_layers, query_scalar: float, d_model: int,
                   attn_softcap=None, final_softcap=None) -> dict:
    return dict(embed_scale=float(np.sqrt(d_model)), activation="gelu_tanh", qk_norm=True, post_norms=True,
                query_scalar=float(query_scalar), sliding_window=int(sliding_window),
                sliding_layers=tuple(bool(x) for x in sliding_layers),
                attn_softcap=float(attn_softcap or 0.0), final_softcap=float(final_softcap or 0.0))


def _pack(cfg: lm.LMConfig, embed, final_norm, lm_head, layers: list[dict], inv_freq) -> dict:
    """The params pytree as host (numpy) arrays in their dtypes: placing them is the caller's (the teacher
    shards them over its mesh), so a teacher larger than one device never lands whole on the first."""
    dtype = jnp.dtype(cfg.compute_dtype)
    stacked = {k: np.asarray(np.stack([layer[k] for layer in layers]), np.float32 if k in _NORMS else dtype)
               for k in layers[0]}
    params = {"embed": np.asarray(embed, dtype), "final_norm": np.asarray(final_norm, np.float32),
              "layers": stacked, "rope_inv_freq": np.asarray(inv_freq, np.float32)}
    if lm_head is not None:
        params["lm_head"] = np.ascontiguousarray(np.asarray(lm_head, dtype).T)
    return params


def load_hf_params(folder: str, compute_dtype: str = "float32"):
    """(LMConfig, params) of a Hugging Face folder (config.json + single or sharded safetensors)."""
    from safetensors import safe_open
    with open(os.path.join(folder, "config.json")) as f:
        hf = json.load(f)
    family = {"gemma3_text": "gemma3"}.get(hf.get("model_type"), hf.get("model_type"))
    if family == "gemma3" and "text_config" in hf:  # the multimodal checkpoint: its language model
        hf = {**hf["text_config"], "tie_word_embeddings": hf.get("tie_word_embeddings", True)}
    if family not in lm.FAMILIES:
        raise ValueError(f"{folder}: teacher architecture {family!r} is not supported; storyjax reads {lm.FAMILIES}.")
    index = os.path.join(folder, "model.safetensors.index.json")
    files = sorted(set(json.load(open(index))["weight_map"].values())) if os.path.exists(index) else \
        [os.path.basename(p) for p in glob.glob(os.path.join(folder, "*.safetensors"))]
    if not files:
        raise ValueError(f"{folder} holds no *.safetensors weights; convert the checkpoint to safetensors.")
    tensors = {}
    for name in files:
        try:
            with safe_open(os.path.join(folder, name), framework="flax") as f:
                for key in f.keys():
                    tensors[key] = np.asarray(f.get_tensor(key).astype(jnp.float32))
        except Exception as e:  # noqa: BLE001 — safetensors raises its own error type for damaged files
            raise ValueError(f"{folder}/{name} is not readable safetensors ({type(e).__name__}: {e}); re-download "
                             "or re-save the checkpoint.") from None
    # "model." for text-only checkpoints; multimodal Gemma-3 nests the language model deeper
    base = next((k[:-len("layers.0.input_layernorm.weight")] for k in tensors
                 if k.endswith("layers.0.input_layernorm.weight")), "model.")
    heads = hf["num_attention_heads"]
    head_dim = hf.get("head_dim") or hf["hidden_size"] // heads
    # transformers >= 5 writes `rope_parameters` (theta included; per layer type for Gemma-3); earlier
    # versions rope_theta + rope_scaling (+ rope_local_base_freq).
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    global_rope, local_rope = rope.get("full_attention", rope), rope.get("sliding_attention", {})
    theta = global_rope.get("rope_theta") or hf.get("rope_theta") or 10000.0
    extra = {}
    if family == "gemma3":
        types = hf.get("layer_types") or [
            "full_attention" if (i + 1) % hf.get("sliding_window_pattern", 6) == 0 else "sliding_attention"
            for i in range(hf["num_hidden_layers"])]
        extra = _gemma3_fields(hf.get("sliding_window") or 0, [t == "sliding_attention" for t in types],
                               hf.get("query_pre_attn_scalar") or head_dim, hf["hidden_size"],
                               hf.get("attn_logit_softcapping"), hf.get("final_logit_softcapping"))
    cfg = lm.LMConfig(
        family=family, vocab_size=hf["vocab_size"], d_model=hf["hidden_size"], num_layers=hf["num_hidden_layers"],
        num_heads=heads, num_kv_heads=hf.get("num_key_value_heads", heads), head_dim=head_dim,
        ffn_dim=hf["intermediate_size"], rms_eps=hf["rms_norm_eps"], max_len=hf.get("max_position_embeddings", 8192),
        qkv_bias=family == "qwen2" or bool(hf.get("attention_bias")),
        tie_embeddings=bool(hf.get("tie_word_embeddings", family == "gemma3")), compute_dtype=compute_dtype,
        **extra).validate()
    names = {**_HF_LAYER, **(_HF_GEMMA3 if family == "gemma3" else {})}
    # Gemma stores each norm's weight as w in x * (1 + w); ours is the multiplier itself
    shift = 1.0 if family == "gemma3" else 0.0
    layers = []
    for i in range(cfg.num_layers):
        layer = {}
        for ours, (theirs, transpose) in names.items():
            key = f"{base}layers.{i}.{theirs}"
            if key in tensors:
                w = tensors[key]
                layer[ours] = w.T if transpose else w + shift if ours in _NORMS else w
            elif ours in _BIASES and cfg.qkv_bias:
                raise ValueError(f"{folder}: {key} is missing but the config asks for attention biases.")
            elif ours not in _BIASES and (ours not in _GEMMA_ONLY or family == "gemma3"):
                raise ValueError(f"{folder}: {key} is missing; is this a {family} checkpoint?")
        layers.append(layer)
    head = None if cfg.tie_embeddings else tensors.get("lm_head.weight")
    if head is None and not cfg.tie_embeddings:
        raise ValueError(f"{folder}: lm_head.weight is missing and tie_word_embeddings is false.")
    global_inv = lm.rope_inv_freq(cfg.head_dim, theta, global_rope)
    local_inv = lm.rope_inv_freq(cfg.head_dim, local_rope.get("rope_theta") or hf.get("rope_local_base_freq")
                                 or 10000.0, local_rope)
    params = _pack(cfg, tensors[f"{base}embed_tokens.weight"], tensors[f"{base}norm.weight"] + shift, head, layers,
                   _per_layer_rope(cfg, global_inv, local_inv))
    return cfg, params


def check_gguf_magic(path: str) -> None:
    """A file named .gguf that is not GGUF is refused at once (its first bytes); a truncated one is found when
    its tensor table is read, as the teacher is built, still before any other work."""
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise ValueError(f"the weights file {path} is not a GGUF file (it starts with {magic!r}, not b'GGUF'): point "
                         "teacher.weights / judge.weights at the model's .gguf, or at a Hugging Face folder.")


def _gguf_reader(path: str):
    """The file's GGUF reader, or one line naming the file, what is wrong and the fix (a truncated download
    otherwise surfaces as a numpy error about dtypes, a wrong file as "GGUF magic invalid")."""
    from gguf import GGUFReader
    size = os.path.getsize(path)
    check_gguf_magic(path)
    try:
        return GGUFReader(path)
    except (ValueError, IndexError, KeyError, OSError) as e:
        raise ValueError(f"the weights file {path} ({size:,} bytes) cannot be read as GGUF ({e}): it is probably "
                         "truncated (an interrupted download or copy); download it again and check its size "
                         "against the source.") from None


def _load_gguf(path: str, compute_dtype: str):
    import importlib.util
    if importlib.util.find_spec("torch") is None:  # checked before minutes of dequantizing
        raise ValueError(f"reading the tokenizer of {path} goes through transformers' GGUF reader, which imports "
                         "torch: `pip install torch` (the CPU build is enough), or give teacher.weights as a Hugging "
                         "Face folder with tokenizer.json (no torch needed).")
    from gguf.quants import dequantize
    reader = _gguf_reader(path)
    meta = {k: f.contents() for k, f in reader.fields.items() if not k.startswith("tokenizer.ggml.")}
    arch = meta.get("general.architecture")
    if arch not in lm.FAMILIES:
        raise ValueError(f"{path}: GGUF architecture {arch!r} is not supported; storyjax reads {lm.FAMILIES}.")
    tensors = {}
    for t in reader.tensors:
        try:
            tensors[t.name] = np.asarray(dequantize(t.data, t.tensor_type), np.float32)
        except NotImplementedError as e:
            raise ValueError(f"{path}: tensor {t.name} is quantized as {t.tensor_type.name}, which the gguf package "
                             f"cannot dequantize ({e}); use a Q4_0/Q4_1/Q5/Q8_0/K-quant/F16 file.") from None
    heads, kv = meta[f"{arch}.attention.head_count"], meta.get(f"{arch}.attention.head_count_kv")
    kv = kv or heads
    d_model, num_layers = meta[f"{arch}.embedding_length"], meta[f"{arch}.block_count"]
    head_dim = meta.get(f"{arch}.attention.key_length") or d_model // heads
    embed = tensors["token_embd.weight"]
    extra = {}
    if arch == "gemma3":
        # llama.cpp fixes what the file does not say: five sliding layers in six, a local RoPE base of 10000,
        # and a query scale of head_dim (d_model / heads for the 62-layer 27B); its converter already stored
        # every norm weight as 1 + w.
        pattern = meta.get(f"{arch}.attention.sliding_window_pattern", 6)
        extra = _gemma3_fields(meta.get(f"{arch}.attention.sliding_window", 0),
                               [(i + 1) % pattern != 0 for i in range(num_layers)],
                               d_model // heads if num_layers == 62 else head_dim, d_model,
                               meta.get(f"{arch}.attn_logit_softcapping"), meta.get(f"{arch}.final_logit_softcapping"))
    cfg = lm.LMConfig(
        family=arch, vocab_size=embed.shape[0], d_model=d_model, num_layers=num_layers,
        num_heads=heads, num_kv_heads=kv, head_dim=head_dim, ffn_dim=meta[f"{arch}.feed_forward_length"],
        rms_eps=meta[f"{arch}.attention.layer_norm_rms_epsilon"], max_len=meta.get(f"{arch}.context_length", 8192),
        qkv_bias="blk.0.attn_q.bias" in tensors, tie_embeddings="output.weight" not in tensors,
        compute_dtype=compute_dtype, **extra).validate()
    layers = []
    for i in range(cfg.num_layers):
        layer = {ours: tensors[f"blk.{i}.{theirs}"] for ours, theirs in _GGUF_LAYER.items()
                 if f"blk.{i}.{theirs}" in tensors}
        if arch == "llama":  # only llama.cpp's Llama converter permutes Q/K
            layer["wq"], layer["wk"] = _unpermute(layer["wq"], heads), _unpermute(layer["wk"], kv)
            if "bq" in layer:
                layer["bq"], layer["bk"] = _unpermute(layer["bq"], heads), _unpermute(layer["bk"], kv)
        for k in ("wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down"):
            layer[k] = layer[k].T
        layers.append(layer)
    scaling = {"rope_type": meta.get(f"{arch}.rope.scaling.type", "default"),
               "factor": meta.get(f"{arch}.rope.scaling.factor", 1.0)}
    global_inv = lm.rope_inv_freq(head_dim, meta.get(f"{arch}.rope.freq_base", 10000.0),
                                  scaling if scaling["rope_type"] == "linear" else None)
    if "rope_freqs.weight" in tensors:  # Llama-3.1's long-context scaling, as frequency divisors
        global_inv = global_inv / tensors["rope_freqs.weight"]
    local_inv = lm.rope_inv_freq(head_dim, 10000.0)
    params = _pack(cfg, embed, tensors["output_norm.weight"], tensors.get("output.weight"), layers,
                   _per_layer_rope(cfg, global_inv, local_inv))
    return cfg, params, _tokenizer(os.path.dirname(os.path.abspath(path)), os.path.basename(path))


def _tokenizer(folder: str, gguf_file: str = ""):
    """The model's tokenizer (transformers; from tokenizer.json, or converted from the GGUF's vocabulary)
    with its chat template."""
    from transformers import AutoTokenizer
    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    tok = AutoTokenizer.from_pretrained(folder, **kwargs)
    if not getattr(tok, "chat_template", None):
        logging.warning("The teacher's tokenizer has no chat template: its prompt is the rubric as plain text.")
    return tok
