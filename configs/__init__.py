"""The run configs (`--config=configs/FILE.py[:PRESET]`), a package so they import each other by name, as
big_vision's do; installed beside storyjax so the same imports work from any directory."""
