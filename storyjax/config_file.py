"""Loads a config file the way `--config=path[:preset]` names it, outside flag parsing."""

from __future__ import annotations

import importlib.util

import ml_collections


def load(spec: str) -> ml_collections.ConfigDict:
    """`spec`: "path/to/config.py" or "path/to/config.py:preset" → that file's get_config([preset])."""
    path, _, preset = spec.partition(":")
    module_spec = importlib.util.spec_from_file_location("_storyjax_config", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(preset) if preset else module.get_config()
