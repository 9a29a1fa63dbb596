"""tfds builders for the BabyLM 2025 text corpora: strict-small (10M) and strict (100M).

Where the internet exists they download the official archive; here (and on
air-gapped pods) `data.path` points at a local copy: the zip itself or its
extracted folder. Each domain file (childes, bnc_spoken, gutenberg,
open_subtitles, simple_wiki, switchboard, ...) is one document whose lines
are kept as written, since a BabyLM line is an utterance or a sentence.

Checksums: tfds verifies downloads against `checksums.tsv` beside this file.
None could be recorded from this offline machine; the first online run with
`--config.data.register_checksums=True` writes them (see README).
"""

from __future__ import annotations

import os
import zipfile

import tensorflow_datasets as tfds
from etils import epath

from storyjax.data import common

# OSF storage of the BabyLM 2025 text data (train_10M, train_100M, dev, test folders).
BABYLM_2025_URL = "https://files.osf.io/v1/resources/ad7qg/providers/osfstorage/6603014bb3a1e301127dfa59/?zip="


def _find_dir(root: epath.Path, name: str) -> epath.Path | None:
    if root.name == name:
        return root
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        found = _find_dir(sub, name)
        if found is not None:
            return found
    return None


def _extract(archive: str, dest_root: str) -> epath.Path:
    """Unzips with the standard library: tfds' own extractor needs TensorFlow."""
    dest = os.path.join(dest_root, "extracted", os.path.basename(archive) + ".d")
    if not os.path.isdir(dest):
        with zipfile.ZipFile(archive) as z:
            z.extractall(dest + ".tmp")
        os.replace(dest + ".tmp", dest)
    return epath.Path(dest)


class _BabyLM(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = [common.SourceConfig(name="default")]
    TRAIN_DIR = ""

    def _info(self):
        return self.dataset_info_from_configs(
            description=f"BabyLM 2025 {self.TRAIN_DIR} pretraining text (https://babylm.github.io/).",
            features=common.features(), homepage="https://babylm.github.io/", disable_shuffling=True)

    def _split_generators(self, dl_manager):
        path = self.builder_config.path
        if path:
            if not os.path.exists(path):
                raise ValueError(f"data.path={path!r} does not exist; give the BabyLM zip or its extracted folder.")
            root = _extract(path, os.fspath(dl_manager.download_dir)) if os.path.isfile(path) else epath.Path(path)
        else:
            root = _extract(os.fspath(dl_manager.download(BABYLM_2025_URL)), os.fspath(dl_manager.download_dir))
        train, dev = _find_dir(root, self.TRAIN_DIR), _find_dir(root, "dev")
        if train is None or dev is None:
            raise ValueError(f"{root} has no '{self.TRAIN_DIR}' and 'dev' folders; is it the BabyLM text archive?")
        return {"train": self._generate_examples(train), "validation": self._generate_examples(dev)}

    def _generate_examples(self, folder):
        files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in (".train", ".dev", ".txt"))
        if not files:
            raise ValueError(f"{folder} holds no .train/.dev/.txt files.")
        for doc, f in enumerate(files):
            text = common.read_text_file(os.fspath(f), self.builder_config.on_bad_file)
            if text is None:
                continue
            lines = [ln for ln in text.splitlines() if ln.strip()]
            yield from common.chunk_records(lines, doc, f.name)


class Babylm10m(_BabyLM):
    TRAIN_DIR = "train_10M"


class Babylm100m(_BabyLM):
    TRAIN_DIR = "train_100M"
