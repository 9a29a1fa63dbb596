"""tfds builder for `tales`: the embedded, synthetic children's-story corpus.

See `tales_generator` for what the stories are. Validation tales are drawn
from indices after the training ones, so the splits never share a tale.
"""

from __future__ import annotations

import tensorflow_datasets as tfds

from storyjax.data import common
from storyjax.data.tales_generator import make_tale


class Tales(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = [common.SourceConfig(name="default", num_docs=20_000)]

    def _info(self):
        return self.dataset_info_from_configs(
            description="SYNTHETIC procedurally generated children's stories (storyjax's offline default).",
            features=common.features(), disable_shuffling=True)

    def _split_generators(self, dl_manager):
        del dl_manager
        cfg = self.builder_config
        if cfg.num_docs < 2:
            raise ValueError(f"data.num_docs={cfg.num_docs}: the tales corpus needs at least 2 stories.")
        n_val = max(1, int(round(cfg.num_docs * (cfg.validation_fraction or 0.02))))
        return {"train": self._generate_examples(0, cfg.num_docs - n_val),
                "validation": self._generate_examples(cfg.num_docs - n_val, cfg.num_docs)}

    def _generate_examples(self, start, stop):
        for i in range(start, stop):
            yield f"{i:09d}", {"text": make_tale(self.builder_config.seed, i), "doc": i}
