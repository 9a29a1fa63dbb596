"""tfds builder over any directory of `.txt` files (e.g. the Austen novels).

Each file is one document. Validation is either named files
(`validation_files`) or, per file, its last `validation_fraction` of
paragraphs, so both splits stay runs of contiguous prose.
"""

from __future__ import annotations

import os

import tensorflow_datasets as tfds

from storyjax.data import common


class TextFiles(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = [common.SourceConfig(name="default")]

    def _info(self):
        return self.dataset_info_from_configs(
            description="Plain-text corpus read from a local directory of .txt files.",
            features=common.features(), disable_shuffling=True)

    def _files(self) -> list[str]:
        path = self.builder_config.path
        if not path or not os.path.isdir(path):
            raise ValueError(f"data.path={path!r} is not a directory; point --config.data.path at a "
                             "directory of .txt files.")
        files = sorted(f for f in os.listdir(path) if f.endswith(".txt") and os.path.isfile(os.path.join(path, f)))
        if not files:
            raise ValueError(f"data.path={path!r} holds no .txt files; put the corpus there as UTF-8 .txt files "
                             "or choose another --config.data.name.")
        missing = set(self.builder_config.validation_files) - set(files)
        if missing:
            raise ValueError(f"data.validation_files names {sorted(missing)}, not found in {path}; "
                             f"the .txt files there are {files}.")
        return files

    def _split_generators(self, dl_manager):
        del dl_manager  # local data only
        files = self._files()
        texts = {}
        for f in files:  # read everything first so a bad file fails before anything is written
            text = common.read_text_file(os.path.join(self.builder_config.path, f), self.builder_config.on_bad_file)
            if text is not None:
                texts[f] = text
        if not texts:
            raise ValueError(f"every .txt file in {self.builder_config.path} was skipped as unreadable.")
        self._check_splits(texts)
        return {"train": self._generate_examples(texts, "train"),
                "validation": self._generate_examples(texts, "validation")}

    def _check_splits(self, texts: dict) -> None:
        """Both splits must get text; said here in one line instead of tfds' "No examples were yielded"."""
        cfg = self.builder_config
        counts = {"train": 0, "validation": 0}
        for name, text in texts.items():
            n = len(common.paragraphs(text, cfg.unwrap_lines))
            if cfg.validation_files:
                counts["validation" if name in cfg.validation_files else "train"] += n
            else:
                n_val = int(round(n * cfg.validation_fraction))
                counts["validation"] += n_val
                counts["train"] += n - n_val
        empty = [split for split, n in counts.items() if n == 0]
        if empty:
            total = sum(counts.values())
            raise ValueError(
                f"the corpus in {cfg.path} gives the {' and '.join(empty)} split no text ({total} paragraph(s) in "
                f"{len(texts)} file(s), validation_fraction={cfg.validation_fraction}, validation_files="
                f"{list(cfg.validation_files)}). Add text (paragraphs are separated by blank lines), or name a "
                "separate validation file with --config.data.validation_files=NAME.txt, or change "
                "--config.data.validation_fraction.")

    def _generate_examples(self, texts, split):
        cfg = self.builder_config
        for doc, (name, text) in enumerate(sorted(texts.items())):
            paras = common.paragraphs(text, cfg.unwrap_lines)
            if cfg.validation_files:
                wanted = (name in cfg.validation_files) == (split == "validation")
                part = paras if wanted else []
            else:
                n_val = int(round(len(paras) * cfg.validation_fraction))
                part = paras[len(paras) - n_val:] if split == "validation" else paras[:len(paras) - n_val]
            yield from common.chunk_records(part, doc, name)
