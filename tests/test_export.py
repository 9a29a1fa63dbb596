"""HF interop against real transformers models on CPU: exported students and imported GPT-2 folders give
the same logits and the same tokens as transformers."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from storyjax import export as X
from storyjax import hf_format
from storyjax import model as M
from storyjax import tokenizer as T
from storyjax.data import common

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

ODD = ["</s> a literal end<s>of text<pad> and <unk>", "  two leading spaces", "trailing  ", "\n\nnewlines\tand tab",
       "Naïve café — “quotes” 日本語 🙂 1,234.5", "", "x"]


@pytest.fixture(scope="module")
def austen(austen_dir):
    emma = "\n".join(common.paragraphs((austen_dir / "emma.txt").read_text(), unwrap_lines=True))
    # Persuasion was not in the tokenizer's training text; wrapped lines keep Austen's indented verse.
    held_out = common.paragraphs((austen_dir / "persuasion.txt").read_text(), unwrap_lines=False)[:600]
    return emma, held_out + ODD


@pytest.fixture(scope="module")
def spm_student(austen, tmp_path_factory):
    """A SentencePiece student with weights far from init (so logits differ from token to token)."""
    root = tmp_path_factory.mktemp("spm_student")
    T.save(str(root / "tok"), T.train([austen[0]], 1000), {"vocab_size": 1000})
    tok = T.load(str(root / "tok"))
    cfg = M.ModelConfig(vocab_size=tok.vocab_size, num_layers=2, d_model=64, num_heads=4, max_len=64, dropout=0.0)
    params = M.init_params(cfg, jax.random.key(0))
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    params = jax.tree.unflatten(treedef, [x + 0.3 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])
    return root, cfg, jax.device_get(params), tok


def hf_logits(model, ids_BxT):
    with torch.no_grad():
        return model(torch.tensor(np.asarray(ids_BxT), dtype=torch.long)).logits.numpy()


def test_sentencepiece_tokenizer_converts_exactly(austen):
    _, texts = austen
    tok = T.from_bytes(T.train([austen[0]], 1000))
    converted = T.hf_from_bytes(X.spm_to_tokenizers_json(tok.processor.serialized_model_proto()).encode(),
                                {"bos_id": 0, "pad_id": 1, "eos_id": 2, "unk_id": 3,
                                 "split_special_tokens": True})
    want = tok.encode(texts)
    assert sum(x[:1] == [tok.processor.piece_to_id("▁")] for x in want) > 20  # indented lines are in there
    assert converted.encode(texts) == want
    assert converted.decode(want) == tok.decode(want) == texts


def test_exported_student_loads_in_transformers_with_same_tokens_and_logits(spm_student, austen, tmp_path):
    root, cfg, params, tok = spm_student
    out = X.write_hf(str(tmp_path / "hf"), cfg, params, tok, str(root / "tok"), {"test": 1})
    assert sorted(os.listdir(out)) == ["config.json", "model.safetensors", "special_tokens_map.json",
                                       "tokenizer.json", "tokenizer_config.json"]
    model = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(out)
    _, texts = austen
    assert [hf_tok(t)["input_ids"] for t in texts] == tok.encode(texts)
    assert hf_tok.decode(tok.encode([texts[3]])[0]) == texts[3]
    assert (hf_tok.eos_token_id, hf_tok.pad_token_id, hf_tok.bos_token_id) == (tok.eos_id, tok.pad_id, tok.bos_id)
    ids = np.asarray([[tok.eos_id] + row[:63] for row in tok.encode(texts[:40]) if len(row) >= 63][:4], np.int32)
    assert ids.shape == (4, 64)
    want = np.asarray(M.forward(cfg, params, jnp.asarray(ids)))
    got = hf_logits(model, ids)
    assert np.abs(want).max() > 5  # not a near-uniform model
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_export_refuses_an_existing_folder_and_leaves_it(spm_student, tmp_path):
    root, cfg, params, tok = spm_student
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep")
    with pytest.raises(ValueError, match="already exists"):
        X.write_hf(str(tmp_path / "out"), cfg, params, tok, str(root / "tok"), {})
    assert os.listdir(tmp_path / "out") == ["mine.txt"]
    assert sorted(os.listdir(tmp_path)) == ["out"]  # no temporary folder left behind


def paper_like_checkpoint(path, austen_text, dtype=torch.float32):
    """What the paper published: a transformers GPT-2 with a byte-level BPE tokenizer.json whose specials
    are <s> <pad> </s> <unk> <mask> (ids 0-4), trained with the `tokenizers` library."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator([austen_text], trainers.BpeTrainer(
        vocab_size=1200, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    hf_tok = transformers.PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", pad_token="<pad>",
                                                  eos_token="</s>", unk_token="<unk>", mask_token="<mask>")
    config = transformers.GPT2Config(vocab_size=1200, n_positions=64, n_embd=64, n_layer=2, n_head=4,
                                     bos_token_id=0, pad_token_id=1, eos_token_id=2)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    model.to(dtype).save_pretrained(path)
    hf_tok.save_pretrained(path)
    return model.float().eval(), hf_tok


def test_imported_gpt2_gives_transformers_logits_and_tokens(austen, tmp_path):
    model, hf_tok = paper_like_checkpoint(tmp_path / "paper", austen[0])
    cfg, params, tok, _ = hf_format.load_hf(str(tmp_path / "paper"))
    assert (cfg.vocab_size, cfg.num_layers, cfg.d_model, cfg.max_len) == (1200, 2, 64, 64)
    assert (tok.bos_id, tok.pad_id, tok.eos_id, tok.unk_id) == (0, 1, 2, 3)
    _, texts = austen
    assert tok.encode(texts) == [hf_tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    assert tok.decode(tok.encode(texts[:50])) == texts[:50]  # byte-level BPE round-trips
    ids = np.asarray([row[:64] for row in tok.encode(texts[:60]) if len(row) >= 64][:4], np.int32)
    np.testing.assert_allclose(np.asarray(M.forward(cfg, params, jnp.asarray(ids))), hf_logits(model, ids),
                               atol=1e-4, rtol=0)


def test_bfloat16_checkpoint_imports_as_its_float32_values(austen, tmp_path):
    model, _ = paper_like_checkpoint(tmp_path / "bf16", austen[0][:20000], dtype=torch.bfloat16)
    cfg, params, _, _ = hf_format.load_hf(str(tmp_path / "bf16"))
    want = model.transformer.h[1].mlp.c_fc.weight.detach().numpy()
    np.testing.assert_array_equal(params["h_1"]["mlp"]["c_fc"]["kernel"], want)


def test_unusable_folders_are_refused_with_the_reason(austen, tmp_path):
    paper_like_checkpoint(tmp_path / "ok", austen[0][:20000])
    with pytest.raises(ValueError, match="no config.json"):
        hf_format.load_hf(str(tmp_path / "missing"))
    variant = tmp_path / "variant"
    variant.mkdir()
    for f in os.listdir(tmp_path / "ok"):
        (variant / f).write_bytes((tmp_path / "ok" / f).read_bytes())
    config = json.loads((variant / "config.json").read_text())
    (variant / "config.json").write_text(json.dumps({**config, "activation_function": "relu"}))
    with pytest.raises(ValueError, match="activation_function='relu'"):
        hf_format.load_hf(str(variant))
    (variant / "config.json").write_text(json.dumps({**config, "model_type": "llama"}))
    with pytest.raises(ValueError, match="only GPT-2"):
        hf_format.load_hf(str(variant))
    (variant / "config.json").write_text(json.dumps(config))
    os.rename(variant / "model.safetensors", variant / "pytorch_model.bin")
    with pytest.raises(ValueError, match="safe_serialization"):
        hf_format.load_hf(str(variant))
