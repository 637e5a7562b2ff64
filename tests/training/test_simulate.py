"""`bidopt simulate` through the installed script against a real temp MLflow store.

Runs that replay go through the real `bidopt` script in a subprocess (imports, table, MLflow
parent and nested runs, artifacts). Bad input is checked the same way when it fails before any
data is loaded (cheap); the cases that need logs run in-process with typer's runner, which
calls the same command function (as tests/training/test_cli.py does).
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from mlflow import MlflowClient

from tests.helpers.cli import bidopt_command, clean_env, sqlite_uri

ROWS = 60_000
SHARED = Path(
    os.environ.get("BIDOPT_SHARED_DATA")
    or Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
)
IPINYOU_2259 = SHARED / "ipinyou_2259_logs" / "train.log.tsv.gz"
LIN_ONE_EIGHTH = ("--strategies", "lin", "--budget-fractions", "1/8")
TRUE_CTR = ("--pctr-column", "true_ctr")
METRICS = (
    "clicks", "conversions", "wins", "spend", "win_rate", "ecpc", "ecpa", "ctr", "expected_clicks",
)  # fmt: skip


def simulate(args: list[object], cwd: Path, uri: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*bidopt_command(), "simulate", *map(str, args)],
        cwd=cwd,
        env=clean_env(BIDOPT_TRACKING_URI=uri, COLUMNS="200"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.stdout


def one_line_error(stderr: str, *needles: str) -> None:
    assert "Traceback" not in stderr, stderr
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), stderr
    for needle in needles:
        assert needle in lines[0], (needle, stderr)


def runs(uri: str) -> tuple[object, list[object]]:
    """(the one parent run, its nested runs) in experiment 'bidopt'."""
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("bidopt")
    assert exp is not None
    found = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in found if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1, [r.info.run_name for r in parents]
    parent = parents[0]
    children = [r for r in found if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == len(found) - 1
    return parent, children


def synth_frame(rows: int = 20_000, seed: int = 4) -> pl.DataFrame:
    from features.synth import generate

    return generate(rows, seed=seed)


@pytest.mark.integration
def test_simulate_logs_parent_and_nested_runs(tmp_path: Path, mlflow_uri: str) -> None:
    out = ok(
        simulate(
            [
                "--rows",
                ROWS,
                "--pctr-column",
                "true_ctr",
                "--strategies",
                "lin,ortb1,lagrangian",
                "--budget-fractions",
                "1/16,1/4",
            ],
            tmp_path,
            mlflow_uri,
        )
    )
    assert "Replay of" in out and "MLflow run" in out
    for name in ("linear", "ortb1", "lagrangian", "linear@truth", "lagrangian@truth"):
        assert name in out, out

    parent, children = runs(mlflow_uri)
    client = MlflowClient(mlflow_uri)
    assert parent.info.run_id in out
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"simulation.csv", "clicks_vs_budget.png"} <= artifacts, artifacts
    table = Path(client.download_artifacts(parent.info.run_id, "simulation.csv", str(tmp_path)))
    with table.open() as f:
        rows = list(csv.DictReader(f))

    # 3 strategies x 2 budgets, learned (here: the column) and true probabilities
    assert len(children) == len(rows) == 12
    seen = {(c.data.params["strategy"], float(c.data.params["budget_fraction"])) for c in children}
    expected = {
        (s + t, f)
        for s in ("linear", "ortb1", "lagrangian")
        for t in ("", "@truth")
        for f in (1 / 16, 1 / 4)
    }
    assert seen == expected
    by_key = {(r["strategy"], float(r["budget_fraction"])): r for r in rows}
    for child in children:
        key = (child.data.params["strategy"], float(child.data.params["budget_fraction"]))
        row, metrics = by_key[key], child.data.metrics
        for name in METRICS:
            value = float(row[name]) if row[name] != "" else float("nan")
            if np.isfinite(value):  # undefined ratios (no conversions: eCPA) are not logged
                assert metrics[name] == pytest.approx(value), (key, name)
            else:
                assert name in ("ecpc", "ecpa", "ctr", "win_rate"), (key, name, row)
        for name in ("clicks", "conversions", "wins", "spend", "win_rate", "ctr"):
            assert name in metrics, (key, name)
        assert metrics["clicks"] > 0 and "ecpc" in metrics
        # synthetic logs: clicks in expectation (true_ctr over the wins) near the realised ones
        assert metrics["expected_clicks"] == pytest.approx(metrics["clicks"], rel=0.5), key
    assert any(r["strategy"].endswith("@truth") for r in rows)


def test_bad_strategy_or_fraction_is_one_line_exit_2(tmp_path: Path, mlflow_uri: str) -> None:
    """Checked before any data is loaded: two cases through the installed script, the rest
    in-process (same command function); nothing is logged."""
    base = ["--rows", ROWS, "--pctr-column", "true_ctr"]
    cases = [
        (["--strategies", "lin,bogus"], ("strategy", "'bogus'")),
        (["--budget-fractions", "abc"], ("budget fraction", "'abc'")),
        (["--budget-fractions", "0"], ("budget fraction", "'0'")),
        (["--budget-fractions", "1/8,1.5"], ("budget fraction", "'1.5'")),
        (["--budget-fractions", "1/0"], ("budget fraction", "'1/0'")),
        (["--episode-length", "0"], ("--episode-length",)),
    ]
    for i, (args, needles) in enumerate(cases):
        if i < 2:
            proc = simulate([*base, *args], tmp_path, mlflow_uri)
            code, err = proc.returncode, proc.stderr
        else:
            code, _, err = invoke([*base, *args])
        assert code == 2, (args, err)
        one_line_error(err, *needles)
    client = MlflowClient(mlflow_uri)
    exp = client.get_experiment_by_name("bidopt")
    assert exp is None or not client.search_runs([exp.experiment_id])


def invoke(args: list[object]) -> tuple[int, str, str]:
    from typer.testing import CliRunner

    from bidopt_cli import app

    result = CliRunner().invoke(app, ["simulate", *map(str, args)], env={"COLUMNS": "200"})
    return result.exit_code, result.stdout, result.stderr


def test_logs_without_price_column(tmp_path: Path, mlflow_uri: str) -> None:
    """Ingest adds the canonical price columns as nulls: still "no price column", named."""
    frame = synth_frame().drop("market_price", "paying_price")
    parquet, csv_path = tmp_path / "noprice.parquet", tmp_path / "noprice.csv"
    frame.write_parquet(parquet)
    frame.with_columns(pl.col("user_segments").list.join(";")).write_csv(csv_path)
    for path in (parquet, csv_path):
        code, out, err = invoke(["--logs", path, *TRUE_CTR, *LIN_ONE_EIGHTH])
        assert code == 2, (path, out, err)
        one_line_error(err, "no price column", "market_price")


def test_probability_column_out_of_range(tmp_path: Path, mlflow_uri: str) -> None:
    """A column scored elsewhere (not in the canonical schema) is read back from the file."""
    frame = synth_frame()
    pctr = pl.Series("pctr", np.full(frame.height, 0.01))
    pctr[123] = 1.5
    path = tmp_path / "scored.parquet"
    frame.with_columns(pctr).write_parquet(path)
    code, out, err = invoke(["--logs", path, "--pctr-column", "pctr", *LIN_ONE_EIGHTH])
    assert code == 2, (out, err)
    one_line_error(err, "'pctr'", "outside [0, 1]", "1.5")

    code, out, err = invoke(["--logs", path, "--pctr-column", "nope", "--strategies", "lin"])
    assert code == 2, (out, err)
    one_line_error(err, "'nope'")

    # CSV: a value that is not a number is reported, not dropped
    text = tmp_path / "scored.csv"
    scored = frame.with_columns(pl.col("user_segments").list.join(";"), pctr.cast(pl.String))
    scored.with_columns(
        pl.when(pl.int_range(pl.len()) == 7)
        .then(pl.lit("high"))
        .otherwise(pl.col("pctr"))
        .alias("pctr")
    ).write_csv(text)
    code, out, err = invoke(["--logs", text, "--pctr-column", "pctr", "--strategies", "lin"])
    assert code == 2, (out, err)
    one_line_error(err, "'pctr'", "outside [0, 1]")


def test_probability_column_lines_up_after_quarantine(tmp_path: Path, mlflow_uri: str) -> None:
    """Ingest quarantines a bad row; the extra column must skip that row too, else every later
    probability would shift by one (here the only bad probability sits on the bad row)."""
    frame = synth_frame().with_columns(pl.col("user_segments").list.join(";"))
    pctr = np.full(frame.height, 0.01)
    pctr[50] = 7.0
    bad = frame.with_columns(
        pl.Series("pctr", pctr),
        pl.when(pl.int_range(pl.len()) == 50)
        .then(pl.lit("telepathy"))
        .otherwise(pl.col("channel"))
        .alias("channel"),
    )
    path = tmp_path / "one_bad_row.csv"
    bad.write_csv(path)
    code, out, err = invoke(["--logs", path, "--pctr-column", "pctr", *LIN_ONE_EIGHTH])
    assert code == 0, (out, err)
    assert "linear" in out


def test_logs_without_clicks_give_zeros_and_a_warning(tmp_path: Path, mlflow_uri: str) -> None:
    frame = synth_frame().with_columns(pl.lit(0).alias("click"), pl.lit(0).alias("conversion"))
    path = tmp_path / "noclicks.parquet"
    frame.write_parquet(path)
    grid = ("--strategies", "lin,ortb1", "--budget-fractions", "1/8,1/2")
    code, out, err = invoke(["--logs", path, *TRUE_CTR, *grid])
    assert code == 0, (out, err)
    assert "warning" in out and "no clicks" in out, out
    assert "Traceback" not in out + err
    parent, children = runs(mlflow_uri)
    assert len(children) == 8
    for child in children:
        assert child.data.metrics["clicks"] == 0 and child.data.metrics["conversions"] == 0
        assert "ecpc" not in child.data.metrics  # undefined, not an error
    assert parent.data.params["replay_auctions"] != "0"


@pytest.mark.integration
def test_episode_mode(tmp_path: Path, mlflow_uri: str) -> None:
    out = ok(
        simulate(
            [
                "--rows",
                30_000,
                "--pctr-column",
                "true_ctr",
                "--strategies",
                "lin,lagrangian",
                "--budget-fractions",
                "1/8",
                "--episode-length",
                1000,
            ],
            tmp_path,
            mlflow_uri,
        )
    )
    assert "Replay of" in out
    parent, children = runs(mlflow_uri)
    assert parent.data.params["episode_length"] == "1000"
    assert len(children) == 4 and all(c.data.metrics["wins"] > 0 for c in children)


def ipinyou_or_skip() -> Path:
    if not IPINYOU_2259.is_file():
        pytest.skip(f"iPinYou 2259 logs not found at {IPINYOU_2259} (set BIDOPT_SHARED_DATA)")
    return IPINYOU_2259


@pytest.mark.integration
def test_ipinyou_2259_replays_end_to_end(tmp_path: Path, mlflow_uri: str) -> None:
    """The raw iPinYou log plus a constant probability column, written as Parquet."""
    raw = pl.read_csv(ipinyou_or_skip(), separator="\t", infer_schema=False)
    path = tmp_path / "ipinyou_scored.parquet"
    raw.with_columns(pl.lit(0.001).alias("pctr")).write_parquet(path)
    out = ok(
        simulate(
            [
                "--logs",
                path,
                "--pctr-column",
                "pctr",
                "--strategies",
                "lin,ortb1,lagrangian",
                "--budget-fractions",
                "1/8,1/2",
            ],
            tmp_path,
            mlflow_uri,
        )
    )
    replayed = 8_355 - round(8_355 * 0.7)  # the later 30%: every row is a won impression
    assert f"Replay of {replayed:,} auctions" in out, out
    parent, children = runs(mlflow_uri)
    assert parent.data.params["probabilities"] == "column:pctr"
    assert len(children) == 6  # no true probabilities on real logs: no @truth rows
    assert not any(c.data.params["strategy"].endswith("@truth") for c in children)
    assert any(c.data.metrics["wins"] > 0 for c in children)


def test_ipinyou_replay_prices_are_the_logged_payprice() -> None:
    """The simulator replays the later 30% against payprice (market price, second price) with
    slotprice as floor: the same numbers as a replay built straight from the raw columns."""
    from bidding.goals import goal_value
    from bidding.replay import make_log, replay, window_budget
    from bidding.strategies import Value
    from features.ingest import load_logs
    from training import simulate as sim

    path = ipinyou_or_skip()
    frame = load_logs(path).frame
    raw = pl.read_csv(path, separator="\t", infer_schema=False)
    assert frame.height == raw.height
    prices = sim.market_prices(frame).to_numpy()
    np.testing.assert_array_equal(prices, raw["payprice"].cast(pl.Float64).to_numpy())

    pctr = np.full(frame.height, 0.2)
    result = sim.simulate(
        frame,
        sim.Probabilities(pctr, None, "const"),
        strategies=["value"],
        fractions=["1/4", "1"],
        replay_fraction=0.3,
        goal="cpc",  # the default is max_clicks now; this check prices a click at 1
        target=1.0,
    )
    later = raw.sort("timestamp", maintain_order=True)
    later = later[round(later.height * 0.7) :]
    log = make_log(
        pctr=np.full(later.height, 0.2),
        market_price=later["payprice"].cast(pl.Float64).to_numpy(),
        floor=later["slotprice"].cast(pl.Float64).to_numpy(),
        click=later["click"].cast(pl.Float64).to_numpy(),
    )
    gv = goal_value("cpc", 1.0)
    for row in result.rows:
        frac = row["budget_fraction"]
        want = replay(log, Value(), window_budget(log, frac), gv).as_dict()
        for key in ("auctions", "bids", "wins", "clicks", "spend", "budget", "exhausted_at"):
            assert row[key] == pytest.approx(want[key]), (frac, key, row[key], want[key])
    assert {r["budget_fraction"] for r in result.rows} == {0.25, 1.0}
    assert result.rows[-1]["wins"] > 0


@pytest.mark.integration
def test_simulate_with_registered_models(tmp_path: Path, trained_store: tuple[str, Path]) -> None:
    """No --pctr-column: pCTR from bidopt-ctr@champion. It runs on a copy of the quickstart
    store's database so the session's shared store lists no simulation run (the copy's
    artifacts still go under the quickstart's artifact root)."""
    _, workdir = trained_store
    db = tmp_path / "store.db"
    shutil.copyfile(workdir / "mlruns" / "mlflow.db", db)
    copy = sqlite_uri(db)
    out = ok(
        simulate(
            [
                "--rows",
                30_000,
                "--seed",
                11,
                "--strategies",
                "lin,lagrangian",
                "--budget-fractions",
                "1/8",
            ],
            tmp_path,
            copy,
        )
    )
    assert "linear@truth" in out
    client = MlflowClient(copy)
    exp = client.get_experiment_by_name("bidopt")
    assert exp is not None
    sims = [
        r
        for r in client.search_runs([exp.experiment_id], max_results=1000)
        if r.info.run_name == "simulate"
    ]
    assert len(sims) == 1
    assert sims[0].data.params["probabilities"] == "bidopt-ctr@champion"
    children = client.search_runs(
        [exp.experiment_id], f"tags.mlflow.parentRunId = '{sims[0].info.run_id}'"
    )
    assert len(children) == 4


def test_segments_are_the_win_rate_models_keys() -> None:
    from bidding.winrate import segment_key
    from training.simulate import segments

    df = pl.DataFrame(
        {"channel": ["web", None, "app", ""], "exchange": ["adx", "openx", None, "x|y"]}
    )
    expected = [segment_key(c or "", e or "") for c, e in df.iter_rows()]
    assert segments(df).tolist() == expected
    assert segments(df.drop("exchange")).tolist() == [
        segment_key(c or "", "") for c in df["channel"]
    ]


def test_max_auctions_replays_a_systematic_sample(tmp_path: Path, mlflow_uri: str) -> None:
    """Above --max-auctions rows every k-th row of each batch is replayed: the run says so,
    records k, and replays that many auctions; episodes refuse to be sampled, named."""
    frame = synth_frame()
    path = tmp_path / "logs.parquet"
    frame.write_parquet(path)
    code, out, err = invoke(["--logs", path, *TRUE_CTR, *LIN_ONE_EIGHTH, "--max-auctions", 5000])
    assert code == 0, (out, err)
    assert "every 4th row of each batch is replayed" in out
    parent, _ = runs(mlflow_uri)
    assert parent.data.params["sample_every"] == "4"
    sampled = frame.gather_every(4)  # one batch: rows 0, 4, 8, ...
    won = sampled.filter(pl.col("won") & pl.col("market_price").is_not_null()).height
    fit = int(parent.data.params["fit_auctions"])
    assert fit + int(parent.data.params["replay_auctions"]) == won

    code, out, err = invoke(
        ["--logs", path, *TRUE_CTR, *LIN_ONE_EIGHTH, "--max-auctions", 5000, "--episode-length", 50]
    )
    assert code == 2, (out, err)
    one_line_error(err, "--max-auctions", "20,000 rows with episodes")
    code, out, err = invoke(["--logs", path, *TRUE_CTR, "--max-auctions", -1])
    assert code == 2, (out, err)
    one_line_error(err, "--max-auctions", "got -1")
