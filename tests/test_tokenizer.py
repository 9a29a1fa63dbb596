import numpy as np
import pytest

from storyjax import tokenizer as T
from storyjax.data import common


@pytest.fixture(scope="module")
def austen_tok(austen_dir):
    train = [(austen_dir / f).read_text() for f in ("emma.txt", "pride_and_prejudice.txt")]
    docs = ["\n".join(common.paragraphs(t, unwrap_lines=True)) for t in train]
    return T.from_bytes(T.train(docs, vocab_size=2000)), austen_dir


def test_round_trip_on_real_unseen_prose(austen_tok):
    tok, austen_dir = austen_tok
    # Persuasion was not in the tokenizer's training text.
    text = (austen_dir / "persuasion.txt").read_text()
    paras = common.paragraphs(text, unwrap_lines=False)[20:220]
    ids = tok.encode(paras)
    assert tok.decode(ids) == paras
    ratio = sum(map(len, ids)) / sum(len(p.split()) for p in paras)
    assert 1.0 < ratio < 2.0  # a real BPE compresses English prose to ~1.3 tokens/word


def test_byte_fallback_encodes_anything_and_specials_have_fixed_ids(austen_tok):
    tok, _ = austen_tok
    odd = "Naïve café — 日本語 🙂\tTabs\nand newlines  double  spaces"
    assert tok.decode(tok.encode([odd])) == [odd]
    assert T.UNK_ID not in tok.encode([odd])[0]
    proc = tok.processor
    assert [proc.id_to_piece(i) for i in (0, 1, 2, 3)] == ["<s>", "<pad>", "</s>", "<unk>"]
    assert (tok.bos_id, tok.pad_id, tok.eos_id, tok.unk_id) == (0, 1, 2, 3)
    assert tok.vocab_size == 2000


def test_training_is_deterministic_and_saved_model_reloads(tmp_path, austen_dir):
    docs = [(austen_dir / "northanger_abbey.txt").read_text()]
    a, b = T.train(docs, 500), T.train(docs, 500)
    assert a == b
    T.save(str(tmp_path), a, {"vocab_size": 500})
    tok = T.load(str(tmp_path))
    assert tok.sha256 == T.from_bytes(a).sha256
    assert T.load_meta(str(tmp_path)) == {"vocab_size": 500}
    np.testing.assert_array_equal(T.as_array(tok.encode(["Catherine"])[0]), T.from_bytes(a).encode(["Catherine"])[0])


def test_lines_longer_than_sentencepiece_takes_are_cut_not_dropped(austen_dir):
    """A corpus whose text is one unwrapped line (here ~880 KB of Emma): SentencePiece drops training lines
    over max_sentence_length silently, or fails with `[!sentences_.empty()]` when nothing is left. They are
    cut at spaces into pieces it takes, so the tokenizer learns from them."""
    line = " ".join((austen_dir / "emma.txt").read_text().split())
    pieces = list(T._within(line, T.MAX_LINE_BYTES))
    assert len(pieces) > 10 and "".join(pieces) == line
    assert all(len(p.encode()) <= T.MAX_LINE_BYTES for p in pieces)
    tok = T.from_bytes(T.train([line], vocab_size=1000))
    sample = line[10_000:12_000]
    ids = tok.encode([sample])[0]
    assert tok.decode([ids]) == [sample] and len(ids) < 0.5 * len(sample)  # learned merges, not bytes
    cjk = "日本語" * 30_000  # no spaces and multi-byte characters: cut on character boundaries
    assert "".join(T._within(cjk, T.MAX_LINE_BYTES)) == cjk
