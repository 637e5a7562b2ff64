"""The RLB benchmark's episode files and training figures: hand-made rows, then the real files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from features.adapters import detect_source
from features.adapters.rlb_episodes import read_train_info
from features.ingest import load_logs

SHARED = Path(
    os.environ.get("BIDOPT_SHARED_DATA")
    or Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
)
EPISODES = SHARED / "ipinyou_rlb_episodes"


def test_episode_rows_become_won_second_price_auctions_in_file_order(tmp_path: Path) -> None:
    path = tmp_path / "c.episodes.tsv"
    path.write_text(
        "episode\tclick\tmarket_price\tpctr\n1\t0\t51\t0.0003\n1\t1\t87\t0.002\n"
        "2\t0\tabc\t0.001\n2\t0\t12\t0.0004\n"
    )
    assert detect_source(["episode", "click", "market_price", "pctr"]) == "rlb_episodes"
    res = load_logs(path, quarantine_path=tmp_path / "q.csv")
    assert res.source == "rlb_episodes"
    assert (res.rows_in, res.rows_used, res.rows_quarantined) == (4, 3, 1)
    assert any("market_price not a number" in r for r in res.reasons), res.reasons
    f = res.frame
    assert f["market_price"].to_list() == [51.0, 87.0, 12.0]
    assert f["paying_price"].to_list() == [51.0, 87.0, 12.0]
    assert f["click"].to_list() == [0, 1, 0]
    assert f["won"].all() and set(f["auction_type"]) == {"second"}
    assert f["event_time"].is_sorted() and f["event_time"].n_unique() == 3
    assert f["impression_id"].to_list() == ["rlb-0", "rlb-1", "rlb-3"]


def test_train_info_is_read_and_checked_by_field(tmp_path: Path) -> None:
    good = {"cpm_train": 68892.7, "avg_ctr_train": 0.0008, "market_price_counts_train": [0, 5, 3]}
    path = tmp_path / "info.json"
    path.write_text(json.dumps(good))
    info = read_train_info(path)
    assert info.mean_price == pytest.approx(68.8927) and info.market_price_counts == (0, 5, 3)
    for field, bad, needle in [
        ("cpm_train", -1, "cpm_train: must be a number > 0"),
        ("avg_ctr_train", "x", "avg_ctr_train: must be a number > 0"),
        ("market_price_counts_train", [], "market_price_counts_train: must be a non-empty"),
        ("market_price_counts_train", [1, -2], "market_price_counts_train[1]: not a count"),
    ]:
        path.write_text(json.dumps({**good, field: bad}))
        with pytest.raises(ValueError, match=r"info\.json: ") as err:
            read_train_info(path)
        assert needle in str(err.value)
    path.write_text("{nope")
    with pytest.raises(ValueError, match="not JSON"):
        read_train_info(path)
    with pytest.raises(ValueError, match="cannot read"):
        read_train_info(tmp_path / "missing.json")


@pytest.mark.skipif(not EPISODES.is_dir(), reason=f"{EPISODES} not present (shared data)")
def test_real_episode_files_load_whole() -> None:
    for campaign in ("1458", "3476"):
        res = load_logs(EPISODES / f"{campaign}.episodes.tsv.gz")
        assert res.source == "rlb_episodes" and res.rows_used == 100_000 == res.rows_in
        info = read_train_info(EPISODES / f"{campaign}.train-info.json")
        assert 30 < info.mean_price < 150 and len(info.market_price_counts) == 301
