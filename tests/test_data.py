import os
import zipfile

import ml_collections
import numpy as np
import pytest

from storyjax import tokenizer as T
from storyjax.data import iter_documents, load_corpus, packing
from storyjax.data.tales_generator import make_tale


def data_cfg(tfds_dir, **kw):
    c = ml_collections.ConfigDict(dict(
        name="tales", path="", tfds_dir=tfds_dir, validation_files=(), validation_fraction=0.05,
        unwrap_lines=True, on_bad_file="error", num_docs=300, seed=0, register_checksums=False))
    c.update(kw)
    return c


def docs_of(source):
    return ["\n".join(p) for p in iter_documents(source)]


def test_tales_are_varied_deterministic_and_shaped_like_stories():
    tales = [make_tale(0, i) for i in range(3000)]
    assert len(set(tales)) == 3000
    assert make_tale(0, 17) == make_tale(0, 17) and make_tale(1, 17) != make_tale(0, 17)
    openings = {t.split(",")[0] for t in tales}
    assert len(openings) >= 6
    assert sum('"' in t for t in tales) > 2000  # dialogue
    lengths = [len(t.split()) for t in tales]
    assert 80 < np.mean(lengths) < 250
    assert len({w for t in tales for w in t.split()}) > 400


def test_tales_builder_splits_without_overlap(tfds_dir):
    src = load_corpus(data_cfg(tfds_dir))
    train, val = docs_of(src["train"]), docs_of(src["validation"])
    assert len(train) + len(val) == 300 and len(val) == 15
    assert not set(train) & set(val)
    assert train[0] == make_tale(0, 0)


def test_text_files_split_by_named_file(tfds_dir, austen_dir):
    src = load_corpus(data_cfg(tfds_dir, name="text_files", path=str(austen_dir),
                               validation_files=("persuasion.txt",)))
    train, val = docs_of(src["train"]), docs_of(src["validation"])
    assert len(train) == 5 and len(val) == 1
    assert val[0].startswith("Persuasion") or "Anne Elliot" in val[0]
    words = sum(len(d.split()) for d in train + val)
    assert 700_000 < words < 730_000  # the six novels, 717,537 words


def test_text_files_split_by_fraction_keeps_contiguous_tails(tfds_dir, austen_dir):
    src = load_corpus(data_cfg(tfds_dir, name="text_files", path=str(austen_dir), validation_fraction=0.1))
    train, val = docs_of(src["train"]), docs_of(src["validation"])
    assert len(train) == len(val) == 6
    for t, v in zip(train, val):
        n_t, n_v = len(t.split("\n")), len(v.split("\n"))
        assert abs(n_v - 0.1 * (n_t + n_v)) <= 1
    emma_text = " ".join((austen_dir / "emma.txt").read_text().split())
    assert " ".join(val[0].split()) in emma_text and emma_text.endswith(" ".join(val[0].split()))


def test_empty_and_bad_corpus_directories_are_explained(tfds_dir, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="holds no .txt files"):
        load_corpus(data_cfg(tfds_dir, name="text_files", path=str(empty)))
    with pytest.raises(ValueError, match="needs --config.data.path"):
        load_corpus(data_cfg(tfds_dir, name="text_files"))
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "good.txt").write_text("A fine story.\n\nIt had two paragraphs, and an ending.\n" * 20)
    (bad / "binary.txt").write_bytes(b"\x89PNG\x00\x00\x01" * 50)
    (bad / "latin1.txt").write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"binary.txt looks binary.*on_bad_file=skip"):
        load_corpus(data_cfg(tfds_dir, name="text_files", path=str(bad)))
    (bad / "binary.txt").unlink()
    with pytest.raises(ValueError, match=r"latin1.txt is not valid UTF-8 \(byte 3"):
        load_corpus(data_cfg(tfds_dir, name="text_files", path=str(bad)))
    src = load_corpus(data_cfg(tfds_dir, name="text_files", path=str(bad), on_bad_file="skip"))
    assert all("caf" not in d for d in docs_of(src["train"]))
    with pytest.raises(ValueError, match="unknown; choose one of"):
        load_corpus(data_cfg(tfds_dir, name="wikipedia"))


def test_babylm_builder_reads_a_local_archive(tfds_dir, tmp_path, austen_dir):
    # A miniature of the official archive's layout, filled with real lines.
    lines = (austen_dir / "emma.txt").read_text().splitlines()
    archive = tmp_path / "babylm.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("text_data/train_10M/childes.train", "\n".join(lines[100:400]))
        z.writestr("text_data/train_10M/simple_wiki.train", "\n".join(lines[400:700]))
        z.writestr("text_data/dev/childes.dev", "\n".join(lines[700:800]))
    src = load_corpus(data_cfg(tfds_dir, name="babylm_10m", path=str(archive)))
    train, val = docs_of(src["train"]), docs_of(src["validation"])
    assert len(train) == 2 and len(val) == 1
    assert train[0].split("\n") == [ln for ln in lines[100:400] if ln.strip()]
    with pytest.raises(ValueError, match="train_100M"):
        load_corpus(data_cfg(tfds_dir, name="babylm_100m", path=str(archive)))


def test_tinystories_builder_reads_local_files(tfds_dir, tmp_path):
    stories = [make_tale(5, i) for i in range(12)]
    (tmp_path / "TinyStoriesV2-GPT4-train.txt").write_text("\n<|endoftext|>\n".join(stories[:10]))
    (tmp_path / "TinyStoriesV2-GPT4-valid.txt").write_text("\n<|endoftext|>\n".join(stories[10:]))
    src = load_corpus(data_cfg(tfds_dir, name="tinystories", path=str(tmp_path)))
    assert docs_of(src["train"]) == [" ".join(s.split()) for s in stories[:10]]
    assert len(docs_of(src["validation"])) == 2


@pytest.fixture(scope="module")
def tales_stream(tfds_dir, tmp_path_factory):
    src = load_corpus(data_cfg(tfds_dir))
    tok = T.from_bytes(T.train(docs_of(src["train"]), 500))
    return packing.tokenize_split(src["train"], tok, str(tmp_path_factory.mktemp("tok")), "train"), tok, src


def test_packing_joins_documents_with_end_of_text(tales_stream):
    stream, tok, src = tales_stream
    docs = docs_of(src["train"])
    assert int((stream.tokens == tok.eos_id).sum()) == len(docs)
    first = stream.tokens[:int(np.argmax(stream.tokens == tok.eos_id))]
    assert tok.decode([first]) == [docs[0]]
    assert stream.words == sum(len(d.split()) for d in docs)


def test_batches_are_a_deterministic_shuffle_split_across_processes(tales_stream):
    stream, _, _ = tales_stream
    n = packing.num_blocks(stream, 64)
    whole = packing.global_batch(stream, 64, seed=3, step=2, batch_size=8)
    parts = [packing.global_batch(stream, 64, 3, 2, 8, process_index=p, process_count=4) for p in range(4)]
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    np.testing.assert_array_equal(whole, packing.global_batch(stream, 64, 3, 2, 8))
    assert not np.array_equal(whole, packing.global_batch(stream, 64, 4, 2, 8))
    # One epoch visits every block exactly once; the next epoch reshuffles.
    epoch0 = packing.global_batch(stream, 64, 3, 0, n)
    epoch1 = packing.global_batch(stream, 64, 3, 1, n)
    blocks = np.asarray(stream.tokens[:n * 64]).reshape(n, 64)
    assert sorted(r.tobytes() for r in epoch0) == sorted(r.tobytes() for r in blocks)
    assert sorted(r.tobytes() for r in epoch1) == sorted(r.tobytes() for r in blocks)
    assert not np.array_equal(epoch0, epoch1)


def test_tokenization_cache_is_reused(tales_stream, tmp_path):
    stream, tok, src = tales_stream
    again = packing.tokenize_split(src["train"], tok, str(tmp_path), "train")
    np.testing.assert_array_equal(again.tokens, stream.tokens)
    assert os.path.exists(tmp_path / f"train-{tok.sha256[:16]}.npy")
    cached = packing.tokenize_split(None, tok, str(tmp_path), "train")  # no source needed once cached
    assert cached.words == stream.words
