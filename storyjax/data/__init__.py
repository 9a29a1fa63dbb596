"""Corpora as tfds builders (array_record, read without TensorFlow) and packing.

`load_corpus(data_cfg)` prepares the chosen builder once (cached under
`data.tfds_dir`) and returns its random-access data sources per split.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Iterator

import tensorflow_datasets as tfds

from storyjax import settings_record
from storyjax.data import babylm, common, tales, text_files, tinystories

BUILDERS = {
    "tales": tales.Tales,
    "text_files": text_files.TextFiles,
    "babylm_10m": babylm.Babylm10m,
    "babylm_100m": babylm.Babylm100m,
    "tinystories": tinystories.Tinystories,
}


@dataclasses.dataclass(frozen=True)
class DataSettings:
    """A `data` section (configs/pretrain.py says what each setting does), parsed at a job's entry."""
    name: str = "tales"
    path: str = ""
    tfds_dir: str = "~/tensorflow_datasets"
    validation_files: tuple = ()
    validation_fraction: float = 0.05
    unwrap_lines: bool = True
    on_bad_file: str = "error"
    num_docs: int = 20_000
    seed: int = 0
    register_checksums: bool = False


def parse(section) -> DataSettings:
    """The checked record of a `data` section (a ConfigDict, or a record already parsed)."""
    data = settings_record.parse(DataSettings, section, "data")
    check(data)
    return data


def check(data_cfg: DataSettings) -> None:
    """Refuses a `data` section no corpus can be built from, in one line naming the setting and the fix;
    touches no file (a job's validate calls it before any work)."""
    if data_cfg.name not in BUILDERS:
        raise ValueError(f"data.name={data_cfg.name!r} is unknown; choose one of {sorted(BUILDERS)}.")
    if data_cfg.name == "text_files" and not data_cfg.path:
        raise ValueError("data.name='text_files' needs --config.data.path=DIR (a directory of .txt files).")
    if data_cfg.path and not data_cfg.path.startswith(("gs://", "s3://")) and not os.path.exists(data_cfg.path):
        raise ValueError(f"data.path={data_cfg.path!r} does not exist (it is not a directory, nor a file); give the "
                         "corpus's folder (or zip).")
    if data_cfg.on_bad_file not in ("error", "skip"):
        raise ValueError(f"data.on_bad_file={data_cfg.on_bad_file!r}: use 'error' or 'skip'.")
    fraction = data_cfg.validation_fraction
    if not (isinstance(fraction, (int, float)) and 0 <= fraction < 1):
        raise ValueError(f"data.validation_fraction={fraction!r}: use a share in [0, 1), e.g. 0.05.")
    if data_cfg.num_docs < 1 or data_cfg.seed < 0:
        raise ValueError(f"data.num_docs={data_cfg.num_docs}, data.seed={data_cfg.seed}: the tales generator needs 1 "
                         "or more stories and a seed >= 0.")


def make_builder(data_cfg: DataSettings) -> tfds.core.DatasetBuilder:
    data_cfg = parse(data_cfg)
    config = common.source_config(
        data_cfg.path, validation_files=tuple(data_cfg.validation_files),
        validation_fraction=float(data_cfg.validation_fraction), unwrap_lines=bool(data_cfg.unwrap_lines),
        on_bad_file=data_cfg.on_bad_file, num_docs=int(data_cfg.num_docs), seed=int(data_cfg.seed))
    tfds_dir = os.path.expanduser(data_cfg.tfds_dir)
    return BUILDERS[data_cfg.name](config=config, data_dir=tfds_dir, file_format="array_record")


def source_identity(data_cfg: DataSettings) -> dict:
    """What a run's corpus is: the builder, its path and the name tfds gives its config (a hash of the
    source settings and of the files' sizes and times), so a changed corpus is told apart from the old one."""
    builder = make_builder(data_cfg)
    return {"builder": data_cfg.name, "path": os.path.abspath(data_cfg.path) if data_cfg.path else "",
            "config": builder.builder_config.name}


def load_corpus(data_cfg: DataSettings) -> dict:
    builder = make_builder(data_cfg)
    download_config = tfds.download.DownloadConfig(register_checksums=bool(data_cfg.register_checksums))
    builder.download_and_prepare(download_config=download_config)
    sources = builder.as_data_source()
    for split in ("train", "validation"):
        if len(sources[split]) == 0:
            raise ValueError(f"the {split} split of data.name={data_cfg.name!r} is empty; "
                             "check data.path, data.validation_files and data.validation_fraction.")
    return sources


def iter_documents(source) -> Iterator[list[str]]:
    """Yields each document as its list of text pieces, in corpus order."""
    pieces, doc = [], None
    for i in range(len(source)):
        rec = source[i]
        text = rec["text"].decode("utf-8") if isinstance(rec["text"], bytes) else rec["text"]
        if doc is not None and rec["doc"] != doc:
            yield pieces
            pieces = []
        pieces.append(text)
        doc = rec["doc"]
    if pieces:
        yield pieces
