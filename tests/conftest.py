"""Test setup: 8 fake CPU devices (before jax initializes) and the shared real data."""

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pathlib  # noqa: E402

import pytest  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
AUSTEN = SHARED_DATA / "corpora" / "austen"
BLIMP = SHARED_DATA / "blimp"


@pytest.fixture(scope="session")
def austen_dir() -> pathlib.Path:
    if not AUSTEN.is_dir():
        pytest.fail(f"{AUSTEN} is missing: tests read real prose from ../shared/data beside the checkout.")
    return AUSTEN


@pytest.fixture(scope="session")
def tfds_dir(tmp_path_factory) -> str:
    """One tfds data dir per session, so each corpus is prepared once."""
    return str(tmp_path_factory.mktemp("tfds"))
