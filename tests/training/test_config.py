"""Defaults, file and --set overrides, cast by the default's type; errors name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.config import ConfigError, load_config


def test_defaults_and_target_tables():
    ctr, cvr = load_config("ctr"), load_config("cvr")
    assert ctr.lightgbm["min_data_per_group"] == 500
    assert ctr.lightgbm["cat_smooth"] == 100.0
    assert cvr.lightgbm["num_leaves"] < ctr.lightgbm["num_leaves"]  # [lightgbm_cvr] applies
    assert ctr.train_frac == 0.7 and ctr.valid_frac == 0.15
    assert ctr.attribution_days == 7.0
    assert ctr.max_ece_rel == 0.1
    assert ctr.flat()["lightgbm.learning_rate"] == ctr.lightgbm["learning_rate"]


def test_set_casts_by_default_type():
    cfg = load_config(
        "ctr", overrides=["num_boost_round=7", "learning_rate=0.2", "split.train_frac=0.6"]
    )
    assert cfg.lightgbm["num_boost_round"] == 7 and isinstance(cfg.lightgbm["num_boost_round"], int)
    assert cfg.lightgbm["learning_rate"] == 0.2
    assert cfg.train_frac == 0.6


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match="unknown key 'num_trees'"):
        load_config("ctr", overrides=["num_trees=5"])


def test_bad_value_is_named():
    with pytest.raises(ConfigError, match="num_boost_round='many' is not a valid int"):
        load_config("ctr", overrides=["num_boost_round=many"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config("ctr", overrides=["learning_rate"])


def test_inconsistent_split_refused():
    with pytest.raises(ConfigError, match="test window"):
        load_config("ctr", overrides=["train_frac=0.9", "valid_frac=0.1"])


def test_config_file(tmp_path: Path):
    path = tmp_path / "c.toml"
    path.write_text(
        "[lightgbm]\nnum_leaves = 7\n[lightgbm_cvr]\nnum_leaves = 5\n[cvr]\nattribution_days = 3\n"
    )
    assert load_config("ctr", path).lightgbm["num_leaves"] == 7
    cvr = load_config("cvr", path)
    assert cvr.lightgbm["num_leaves"] == 5 and cvr.attribution_days == 3.0
    path.write_text("[lightgbm]\nleaves = 7\n")
    with pytest.raises(ConfigError, match=r"lightgbm\.leaves"):
        load_config("ctr", path)
    path.write_text("[nonsense]\n")
    with pytest.raises(ConfigError, match=r"\[nonsense\]"):
        load_config("ctr", path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config("ctr", tmp_path / "missing.toml")
