"""Loading a teacher: a GGUF file read lazily and exactly, its tokenizer built without torch and giving
transformers' ids, and weights streamed so the load takes about the memory the weights take."""

import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from test_jax_teacher import smollm2_path

from storyjax.teachers import gguf_file, gguf_tokenizer, lm_weights

SHARED = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "shared", "data")


def real_texts() -> list:
    """Passages of the shared corpora nobody here wrote, plus digits, spacing and chat markup."""
    paths = sorted(glob.glob(os.path.join(SHARED, "**", "*.txt"), recursive=True))
    texts = [open(p, encoding="utf-8", errors="replace").read()[:2500] for p in paths[:8]]
    return texts + ["In 1999 she paid $3.50 for 12 eggs!!  Then\n\n\tleft...", "naïve café — “quoted” 'twas; it's",
                    "<|im_start|>user\nhi<|im_end|>", "   three spaces first", "x"]


def test_gguf_metadata_and_tensors_read_as_the_gguf_package_reads_them():
    from gguf import GGUFReader
    from gguf.quants import dequantize
    ours, theirs = gguf_file.GGUFFile(smollm2_path()), GGUFReader(smollm2_path())
    fields = {k: f.contents() for k, f in theirs.fields.items() if not k.startswith("GGUF.")}
    assert ours.metadata.keys() == fields.keys()
    for key, value in fields.items():
        assert ours.metadata[key] == pytest.approx(value) if isinstance(value, float) else ours.metadata[key] == value
    by_name = {t.name: t for t in theirs.tensors}
    assert ours.tensors.keys() == by_name.keys()
    for name in ("token_embd.weight", "blk.3.ffn_down.weight", "blk.0.attn_norm.weight", "blk.29.attn_q.weight"):
        ref = np.asarray(dequantize(by_name[name].data, by_name[name].tensor_type), np.float32)
        assert ours.shape(name) == ref.shape
        np.testing.assert_array_equal(ours.rows(name, 0, ref.shape[0]), ref)
        np.testing.assert_array_equal(ours.rows(name, 5, 9), ref[5:9])


def test_gguf_tokenizer_gives_transformers_ids_and_chat_template():
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("torch")  # transformers' own GGUF tokenizer reader, the reference, needs it
    path = smollm2_path()
    ours = gguf_tokenizer.from_metadata(gguf_file.GGUFFile(path).metadata, path)
    ref = transformers.AutoTokenizer.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path))
    texts = real_texts()
    assert len(texts) > 8, "the shared corpora are missing"
    for text in texts:
        for special in (False, True):
            assert ours.encode(text, add_special_tokens=special) == ref.encode(text, add_special_tokens=special)
        assert ours.decode(ours.encode(text, add_special_tokens=False)) == text
    chat = [{"role": "user", "content": "Grade this story."}]
    assert ours.apply_chat_template(chat, tokenize=False, add_generation_prompt=True) == \
        ref.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    assert (ours.bos_token_id, ours.eos_token_id, len(ours)) == (ref.bos_token_id, ref.eos_token_id, len(ref))


def test_a_gguf_teacher_loads_and_tokenizes_without_torch():
    code = ("import sys; sys.modules['torch'] = None\n"  # any import of torch now fails
            "from storyjax.teachers import lm_weights\n"
            f"cfg, params, tok = lm_weights.load({smollm2_path()!r})\n"
            "text = tok.apply_chat_template([{'role': 'user', 'content': 'Once upon a time'}], tokenize=False)\n"
            "ids = tok.encode(text, add_special_tokens=False)\n"
            "print(cfg.family, cfg.num_layers, len(ids))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    family, layers, n = out.stdout.split()[-3:]
    assert (family, layers) == ("llama", "30") and int(n) > 8


def test_weights_read_in_slabs_equal_weights_read_whole(monkeypatch):
    """Slabs of a few rows (Q/K unpermuted per head, matrices transposed piece by piece) give the same
    parameters as slabs larger than any tensor."""
    cfg, whole, _ = lm_weights.load(smollm2_path())
    monkeypatch.setattr(lm_weights, "_SLAB_ELEMENTS", 3000)
    _, pieces, _ = lm_weights.load(smollm2_path())
    def flat(params):
        return {**{k: v for k, v in params.items() if k != "layers"},
                **{f"layers.{k}": v for k, v in params["layers"].items()}}

    a, b = flat(whole), flat(pieces)
    assert a.keys() == b.keys() and "lm_head" not in a  # SmolLM2 ties its embedding
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


PEAK = """
import json, sys
import jax, numpy as np
from storyjax.profiling import HostPeak
from storyjax.teachers import lm_passes, lm_weights
path, dtype = sys.argv[1], sys.argv[2]
mesh = lm_passes.teacher_mesh(1)
jax.device_put(np.ones(3), jax.devices()[0]).block_until_ready()  # the runtime, before measuring
import gguf, safetensors, tokenizers, transformers  # noqa: imports are not the load
with HostPeak() as peak:
    if path.endswith(".gguf"):
        cfg, params, tok = lm_weights.load(path, dtype, lm_passes.placer(mesh))
    else:
        cfg, params = lm_weights.load_hf_params(path, dtype, lm_passes.placer(mesh))
weights = sum(x.nbytes for x in jax.tree.leaves(params))
print(json.dumps({"peak": peak.bytes, "weights": weights}))
"""


def load_peak(path: str, dtype: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PEAK, path, dtype], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="host peak measured through Linux's /proc")
def test_a_teacher_loads_within_1_3x_the_memory_of_its_weights(tmp_path):
    """Before, SmolLM2's load peaked at 3.1x its float32 weights (a float32 copy of every tensor, then the
    stacked copy, then the device copy); a random 330M-parameter Llama checkpoint in bf16 shards is read
    in the same bound."""
    from storyjax.bench_teacher import random_hf_folder
    smol = load_peak(smollm2_path(), "float32")  # the CPU teacher's compute dtype
    assert smol["weights"] > 500e6 and smol["peak"] <= 1.3 * smol["weights"], smol
    shape = dict(vocab_size=32_000, hidden_size=1024, intermediate_size=4096, num_hidden_layers=16,
                 num_attention_heads=16, num_key_value_heads=4, rope_theta=500_000.0, rms_norm_eps=1e-5,
                 max_position_embeddings=2048, tie_word_embeddings=False)
    folder = random_hf_folder(shape, str(tmp_path / "llama"))
    for dtype in ("float32", "bfloat16"):
        llama = load_peak(folder, dtype)
        assert llama["peak"] <= 1.3 * llama["weights"], (dtype, llama)
