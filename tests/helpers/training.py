"""Training configurations small enough for tests."""

from __future__ import annotations

from training.config import TrainConfig, load_config

FAST = ["num_boost_round=60", "early_stopping_rounds=10", "num_threads=1"]


def fast_config(target: str, *extra: str) -> TrainConfig:
    """The target's default configuration with few rounds on one thread, plus `extra` overrides."""
    return load_config(target, overrides=[*FAST, *extra])  # type: ignore[arg-type]
