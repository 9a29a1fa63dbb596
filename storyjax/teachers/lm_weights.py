"""Teacher weights from a Hugging Face folder (config.json + safetensors) or one GGUF file, as the params
pytree of `teachers.lm`, with the model's own tokenizer and chat template.

GGUF notes: shapes are stored fastest-axis first (numpy sees them reversed, i.e. the Hugging Face
[out, in] layout, once dequantized); llama.cpp's converter permutes the rows of Q and K of
Llama-architecture files for its interleaved RoPE, which is undone here so one rotate-half RoPE serves
both sources; a `rope_freqs` tensor holds Llama-3's long-context frequency factors.

Memory: weights are read a slab of rows at a time (a quantized embedding dequantizes to float32 in
16 MB pieces), cast to the compute dtype into their parameter's host buffer, and each parameter is placed
(the teacher: on its mesh, sharded) as soon as it is complete, largest first. The host never holds a
float32 copy of the model: on a GPU its peak is one parameter (an 8B Llama's stacked w_gate, 0.9 GB in
bf16); on CPU, where the placed weights are host memory too, the weights plus one parameter and the
tokenizer. A GGUF file's pages are given back to the OS once each tensor is read.
"""

from __future__ import annotations

import glob
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from storyjax.teachers import gguf_file, gguf_tokenizer, lm

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
_MATRICES = ("wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down")  # stored [out, in], ours [in, out]
_NORMS = ("attn_norm", "ffn_norm", "post_attn_norm", "post_ffn_norm", "q_norm", "k_norm")
_BIASES = ("bq", "bk", "bv")
_GEMMA_ONLY = ("post_attn_norm", "post_ffn_norm", "q_norm", "k_norm")


def load(path: str, compute_dtype: str = "float32", place=None):
    """(LMConfig, params, tokenizer) of a teacher at `path`: a Hugging Face folder or a `.gguf` file.
    `place(path, host_array)` puts each parameter where it will live as soon as it is read
    (`lm_passes.placer(mesh)`: on the teacher's mesh, sharded); by default the params stay host arrays."""
    if not path:
        raise ValueError("teacher.name='jax' needs --config.teacher.jax.weights=PATH: a Hugging Face folder "
                         "(config.json, *.safetensors, tokenizer.json) or a .gguf file.")
    if not os.path.exists(path):
        raise ValueError(f"teacher.jax.weights={path!r} does not exist; give a Hugging Face folder or a .gguf file.")
    if os.path.isfile(path) and path.endswith(".gguf"):
        cfg, params, tok = _load_gguf(path, compute_dtype, place)
    elif os.path.isdir(path) and os.path.exists(os.path.join(path, "config.json")):
        from transformers import AutoTokenizer
        tok = AutoTokenizer.from_pretrained(path)  # first: a folder without a tokenizer fails in seconds
        cfg, params = load_hf_params(path, compute_dtype, place)
    else:
        raise ValueError(f"teacher.jax.weights={path!r} is neither a .gguf file nor a folder with config.json.")
    if not getattr(tok, "chat_template", None):
        logging.warning("The teacher's tokenizer has no chat template: its prompt is the rubric as plain text.")
    return cfg, params, tok


_SLAB_ELEMENTS = 1 << 22  # rows read (and dequantized to float32) at a time: 16 MB, whatever the tensor


class _SafetensorsTensors:
    """A Hugging Face folder's safetensors, read by rows; each read opens and closes its file, so mapped
    pages never pile up."""

    def __init__(self, folder: str, files: list):
        from safetensors import safe_open
        self.folder, self.open, self.files, self.shapes = folder, safe_open, {}, {}
        for name in files:
            try:
                with safe_open(os.path.join(folder, name), framework="numpy") as f:
                    for key in f.keys():
                        self.files[key] = os.path.join(folder, name)
                        self.shapes[key] = tuple(f.get_slice(key).get_shape())
            except Exception as e:  # noqa: BLE001 — safetensors raises its own error type for damaged files
                raise ValueError(f"{folder}/{name} is not readable safetensors ({type(e).__name__}: {e}); "
                                 "re-download or re-save the checkpoint.") from None

    def __contains__(self, name: str) -> bool:
        return name in self.files

    def shape(self, name: str) -> tuple:
        return self.shapes[name]

    def rows(self, name: str, r0: int, r1: int) -> np.ndarray:
        with self.open(self.files[name], framework="numpy") as f:
            return np.asarray(f.get_slice(name)[r0:r1], np.float32)

    def release(self, name: str) -> None:
        pass


def _slabs(src, name: str, transpose: bool = False, heads: int = 0, shift: float = 0.0):
    """(axis, offset, piece) for `src`'s tensor `name` ([out, ...]) a slab of rows at a time, each piece in
    our layout: transposed for a matrix we store [in, out] (its rows then run along axis 1), Q/K rows
    unpermuted (whole heads per slab: the permutation stays inside a head), `shift` added to a norm."""
    shape = src.shape(name)
    out, row = shape[0], math.prod(shape[1:])
    step = max(1, _SLAB_ELEMENTS // max(row, 1))
    if heads:
        per_head = out // heads
        step = max(per_head, step // per_head * per_head)
    for r0 in range(0, out, step):
        r1 = min(out, r0 + step)
        x = src.rows(name, r0, r1)
        if heads:
            x = _unpermute(x, (r1 - r0) // per_head)
        if shift:
            x = x + shift
        yield (1, r0, x.T) if transpose else (0, r0, x)
    src.release(name)


def _assemble(cfg: lm.LMConfig, src, plan: dict, place) -> dict:
    """The params pytree from `plan` ({path: (shape, dtype, [(source name or a function giving the value,
    index into the layer stack or None, slab keywords)])}): each parameter is written into a host buffer a
    slab at a time and handed to `place(path, buffer)` as soon as it is complete, largest first, so that
    while the last (small) ones are read nearly everything is already placed."""
    params: dict = {"layers": {}}
    for path in sorted(plan, key=lambda path: -math.prod(plan[path][0]) * np.dtype(plan[path][1]).itemsize):
        shape, dtype, parts = plan[path]
        host = np.empty(shape, dtype)
        for name, index, kw in parts:
            slabs = [(0, 0, np.asarray(name()))] if callable(name) else _slabs(src, name, **kw)
            for axis, offset, x in slabs:
                where = [slice(None)] * x.ndim
                where[axis] = slice(offset, offset + x.shape[axis])
                (host if index is None else host[index])[tuple(where)] = x
        node = params["layers"] if path[0] == "layers" else params
        node[path[-1]] = place(path, host) if place else host
        del host
    return params


def _layer_plan(cfg: lm.LMConfig, src, names: dict, what: str) -> dict:
    """The stacked layer parameters: `names` maps ours → a function of the layer index giving (source
    name, fill keywords), or None where the layer has no such tensor."""
    plan = {}
    for ours, where in names.items():
        first = where(0)
        if first is None:
            continue
        shape = src.shape(first[0])
        if first[1].get("transpose"):
            shape = shape[::-1]
        dtype = np.float32 if ours in _NORMS else jnp.dtype(cfg.compute_dtype)
        parts = []
        for i in range(cfg.num_layers):
            name, kw = where(i)
            if name not in src:
                raise ValueError(f"{what}: {name} is missing; is this a {cfg.family} checkpoint?")
            parts.append((name, i, kw))
        plan[("layers", ours)] = ((cfg.num_layers, *shape), dtype, parts)
    return plan


def _top_plan(cfg: lm.LMConfig, src, embed: str, final_norm: str, head: str | None, rope_NxD, shift: float) -> dict:
    dtype = jnp.dtype(cfg.compute_dtype)
    plan = {("embed",): (src.shape(embed), dtype, [(embed, None, {})]),
            ("final_norm",): (src.shape(final_norm), np.float32, [(final_norm, None, {"shift": shift})]),
            ("rope_inv_freq",): (rope_NxD.shape, np.float32, [(lambda: rope_NxD, None, {})])}
    if head is not None:
        plan[("lm_head",)] = (src.shape(head)[::-1], dtype, [(head, None, {"transpose": True})])
    return plan


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


def hf_text_config(hf: dict, where: str = "config.json") -> tuple[str, dict]:
    """(family, the language model's fields) of a transformers config.json's contents."""
    family = {"gemma3_text": "gemma3"}.get(hf.get("model_type"), hf.get("model_type"))
    if family == "gemma3" and "text_config" in hf:  # the multimodal checkpoint: its language model
        hf = {**hf["text_config"], "tie_word_embeddings": hf.get("tie_word_embeddings", True)}
    if family not in lm.FAMILIES:
        raise ValueError(f"{where}: teacher architecture {family!r} is not supported; storyjax reads {lm.FAMILIES}.")
    return family, hf


def hf_lm_config(family: str, hf: dict, compute_dtype: str = "float32") -> tuple[lm.LMConfig, dict]:
    """(LMConfig, its RoPE section) from a transformers config's language-model fields (`hf_text_config`)."""
    heads = hf["num_attention_heads"]
    head_dim = hf.get("head_dim") or hf["hidden_size"] // heads
    # transformers >= 5 writes `rope_parameters` (theta included; per layer type for Gemma-3); earlier
    # versions rope_theta + rope_scaling (+ rope_local_base_freq).
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
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
    return cfg, rope


def load_hf_params(folder: str, compute_dtype: str = "float32", place=None):
    """(LMConfig, params) of a Hugging Face folder (config.json + single or sharded safetensors)."""
    with open(os.path.join(folder, "config.json")) as f:
        family, hf = hf_text_config(json.load(f), folder)
    index = os.path.join(folder, "model.safetensors.index.json")
    files = sorted(set(json.load(open(index))["weight_map"].values())) if os.path.exists(index) else \
        [os.path.basename(p) for p in glob.glob(os.path.join(folder, "*.safetensors"))]
    if not files:
        raise ValueError(f"{folder} holds no *.safetensors weights; convert the checkpoint to safetensors.")
    src = _SafetensorsTensors(folder, files)
    # "model." for text-only checkpoints; multimodal Gemma-3 nests the language model deeper
    base = next((k[:-len("layers.0.input_layernorm.weight")] for k in src.files
                 if k.endswith("layers.0.input_layernorm.weight")), "model.")
    cfg, rope = hf_lm_config(family, hf, compute_dtype)
    global_rope, local_rope = rope.get("full_attention", rope), rope.get("sliding_attention", {})
    theta = global_rope.get("rope_theta") or hf.get("rope_theta") or 10000.0
    names = {**_HF_LAYER, **(_HF_GEMMA3 if family == "gemma3" else {})}
    # Gemma stores each norm's weight as w in x * (1 + w); ours is the multiplier itself
    shift = 1.0 if family == "gemma3" else 0.0

    def where(ours, theirs, transpose):
        if (ours in _BIASES and not cfg.qkv_bias) or (ours in _GEMMA_ONLY and family != "gemma3"):
            return lambda i: None
        return lambda i: (f"{base}layers.{i}.{theirs}", {"transpose": transpose, "shift": shift * (ours in _NORMS)})

    plan = _layer_plan(cfg, src, {ours: where(ours, *theirs) for ours, theirs in names.items()}, folder)
    head = None if cfg.tie_embeddings else "lm_head.weight"
    if head is not None and head not in src:
        raise ValueError(f"{folder}: lm_head.weight is missing and tie_word_embeddings is false.")
    for name in (f"{base}embed_tokens.weight", f"{base}norm.weight"):
        if name not in src:
            raise ValueError(f"{folder}: {name} is missing; is this a {family} checkpoint?")
    global_inv = lm.rope_inv_freq(cfg.head_dim, theta, global_rope)
    local_inv = lm.rope_inv_freq(cfg.head_dim, local_rope.get("rope_theta") or hf.get("rope_local_base_freq")
                                 or 10000.0, local_rope)
    plan.update(_top_plan(cfg, src, f"{base}embed_tokens.weight", f"{base}norm.weight", head,
                          _per_layer_rope(cfg, global_inv, local_inv), shift))
    return cfg, _assemble(cfg, src, plan, place)


def param_shapes(cfg: lm.LMConfig) -> dict:
    """The params pytree the loaders build for `cfg`, as ShapeDtypeStructs (nothing read or allocated): what
    a compile-only look at the teacher's passes lowers against."""
    L, D, F, hd = cfg.num_layers, cfg.d_model, cfg.ffn_dim, cfg.head_dim
    q, kv = cfg.num_heads * hd, cfg.num_kv_heads * hd
    dims = {"attn_norm": (D,), "ffn_norm": (D,), "wq": (D, q), "wk": (D, kv), "wv": (D, kv), "wo": (q, D),
            "w_gate": (D, F), "w_up": (D, F), "w_down": (F, D)}
    if cfg.qkv_bias:
        dims.update(bq=(q,), bk=(kv,), bv=(kv,))
    if cfg.family == "gemma3":
        dims.update(post_attn_norm=(D,), post_ffn_norm=(D,), q_norm=(hd,), k_norm=(hd,))
    dtype = jnp.dtype(cfg.compute_dtype)
    spec = lambda shape, norm=False: jax.ShapeDtypeStruct(shape, np.float32 if norm else dtype)
    params = {"layers": {name: spec((L, *d), name in _NORMS) for name, d in dims.items()},
              "embed": spec((cfg.vocab_size, D)), "final_norm": spec((D,), True),
              "rope_inv_freq": spec((L, hd // 2), True)}
    if not cfg.tie_embeddings:
        params["lm_head"] = spec((D, cfg.vocab_size))
    return params


def _load_gguf(path: str, compute_dtype: str, place=None):
    gguf_file.check_gguf_magic(path)
    src = gguf_file.GGUFFile(path)
    meta = src.metadata
    arch = meta.get("general.architecture")
    if arch not in lm.FAMILIES:
        raise ValueError(f"{path}: GGUF architecture {arch!r} is not supported; storyjax reads {lm.FAMILIES}.")
    tok = gguf_tokenizer.from_metadata(meta, path)  # before minutes of dequantizing: a vocabulary it cannot read
    heads, kv = meta[f"{arch}.attention.head_count"], meta.get(f"{arch}.attention.head_count_kv")
    kv = kv or heads
    d_model, num_layers = meta[f"{arch}.embedding_length"], meta[f"{arch}.block_count"]
    head_dim = meta.get(f"{arch}.attention.key_length") or d_model // heads
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
        family=arch, vocab_size=src.shape("token_embd.weight")[0], d_model=d_model, num_layers=num_layers,
        num_heads=heads, num_kv_heads=kv, head_dim=head_dim, ffn_dim=meta[f"{arch}.feed_forward_length"],
        rms_eps=meta[f"{arch}.attention.layer_norm_rms_epsilon"], max_len=meta.get(f"{arch}.context_length", 8192),
        qkv_bias="blk.0.attn_q.bias" in src, tie_embeddings="output.weight" not in src,
        compute_dtype=compute_dtype, **extra).validate()
    # only llama.cpp's Llama converter permutes Q/K (and their biases)
    unpermute = {"wq": heads, "wk": kv, "bq": heads, "bk": kv} if arch == "llama" else {}

    def where(ours, theirs):
        if f"blk.0.{theirs}" not in src:
            return lambda i: None
        kw = {"transpose": ours in _MATRICES, "heads": unpermute.get(ours, 0)}
        return lambda i: (f"blk.{i}.{theirs}", kw)

    plan = _layer_plan(cfg, src, {ours: where(ours, theirs) for ours, theirs in _GGUF_LAYER.items()}, path)
    scaling = {"rope_type": meta.get(f"{arch}.rope.scaling.type", "default"),
               "factor": meta.get(f"{arch}.rope.scaling.factor", 1.0)}
    global_inv = lm.rope_inv_freq(head_dim, meta.get(f"{arch}.rope.freq_base", 10000.0),
                                  scaling if scaling["rope_type"] == "linear" else None)
    if "rope_freqs.weight" in src:  # Llama-3.1's long-context scaling, as frequency divisors
        n = src.shape("rope_freqs.weight")[0]
        global_inv = global_inv / src.rows("rope_freqs.weight", 0, n)
    local_inv = lm.rope_inv_freq(head_dim, 10000.0)
    plan.update(_top_plan(cfg, src, "token_embd.weight", "output_norm.weight",
                          None if cfg.tie_embeddings else "output.weight",
                          _per_layer_rope(cfg, global_inv, local_inv), 0.0))
    params = _assemble(cfg, src, plan, place)
    src.close()
    return cfg, params, tok
