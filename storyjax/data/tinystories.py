"""tfds builder for TinyStories (Eldan & Li, 2023), the GPT-4-written V2 files.

Stories are separated by `<|endoftext|>`; each becomes one document. Offline,
`data.path` points at a folder holding the two .txt files. Checksums are
recorded by the first online run (see `babylm.py`).
"""

from __future__ import annotations

import os

import tensorflow_datasets as tfds

from storyjax.data import common

_BASE = "https://huggingface.co/datasets/roneneldan/TinyStories/resolve/main/"
URLS = {"train": _BASE + "TinyStoriesV2-GPT4-train.txt", "validation": _BASE + "TinyStoriesV2-GPT4-valid.txt"}
SEPARATOR = "<|endoftext|>"


def split_stories(text: str) -> list[str]:
    return [" ".join(s.split()) for s in text.split(SEPARATOR) if s.strip()]


class Tinystories(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = [common.SourceConfig(name="default")]

    def _info(self):
        return self.dataset_info_from_configs(
            description="TinyStories V2 (GPT-4 generated short stories).", features=common.features(),
            homepage="https://huggingface.co/datasets/roneneldan/TinyStories", disable_shuffling=True)

    def _split_generators(self, dl_manager):
        path = self.builder_config.path
        if path:
            files = {s: os.path.join(path, os.path.basename(u)) for s, u in URLS.items()}
            missing = [f for f in files.values() if not os.path.isfile(f)]
            if missing:
                raise ValueError(f"data.path={path!r} lacks {missing}; download them from {_BASE}.")
        else:
            files = dl_manager.download(URLS)
        return {s: self._generate_examples(os.fspath(f)) for s, f in files.items()}

    def _generate_examples(self, path):
        text = common.read_text_file(path, self.builder_config.on_bad_file) or ""
        for i, story in enumerate(split_stories(text)):
            yield f"{i:09d}", {"text": story, "doc": i}
