from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import lightgbm as lgb
import numpy as np
import polars as pl
import pytest

from features.batch import encode_matrix
from features.bundle import BUNDLE_ARTIFACT, MODEL_FILE, BundleError, ModelBundle, find_bundle_dir
from features.calibrator import Calibrator
from features.online import OnlineEncoder
from features.schema import CHANNELS, SCHEMA, conform
from features.spec_fit import fit_spec


def _logs(n: int = 3000) -> pl.DataFrame:
    rng = np.random.default_rng(0)
    t0 = datetime(2026, 1, 5, tzinfo=UTC)
    channel = rng.integers(0, 6, n)
    click = (rng.random(n) < 0.02 + 0.05 * (channel == 5)).astype(np.int8)
    data = {
        "event_time": [t0 + timedelta(seconds=int(s)) for s in np.sort(rng.integers(0, 86400, n))],
        "impression_id": [f"i{i}" for i in range(n)],
        "channel": [CHANNELS[c] for c in channel],
        "publisher": [f"p{k}" for k in rng.integers(0, 40, n)],
        "slot_width": np.full(n, 300, dtype=np.int32),
        "slot_height": np.full(n, 250, dtype=np.int32),
        "floor_price": rng.gamma(2, 5, n),
        "click": click,
    }
    return conform(pl.DataFrame(data, schema_overrides={k: SCHEMA[k] for k in data}))


def _bundle() -> tuple[ModelBundle, pl.DataFrame]:
    df = _logs()
    spec = fit_spec(df, min_count=5)
    x = encode_matrix(df, spec)
    cats = [spec.names.index(c) for c in spec.categorical]
    ds = lgb.Dataset(x, df["click"].to_numpy(), categorical_feature=cats, feature_name=spec.names)
    booster = lgb.train({"objective": "binary", "verbose": -1, "num_leaves": 7}, ds, 20)
    raw = booster.predict(x)
    cal = Calibrator("platt").fit(raw, df["click"].to_numpy())
    return ModelBundle(booster, spec, cal, {"name": "test"}), df


def test_save_load_round_trip_predicts_the_same(tmp_path: Path) -> None:
    bundle, df = _bundle()
    loaded = ModelBundle.load(bundle.save(tmp_path / "b"))
    np.testing.assert_array_equal(bundle.predict_frame(df), loaded.predict_frame(df))
    assert loaded.meta == {"name": "test"}
    # the online encoder feeds the same model to the same answer
    enc = OnlineEncoder(loaded.spec)
    row = df.row(7, named=True)
    one = loaded.predict_matrix(enc.encode(row).reshape(1, -1))
    assert one[0] == pytest.approx(loaded.predict_frame(df[7:8])[0], abs=1e-15)


def test_load_names_the_broken_file(tmp_path: Path) -> None:
    bundle, _ = _bundle()
    d = bundle.save(tmp_path / "b")
    (d / MODEL_FILE).write_text("not a model")
    with pytest.raises(BundleError, match=MODEL_FILE):
        ModelBundle.load(d)
    (d / MODEL_FILE).unlink()
    with pytest.raises(BundleError, match="cannot read"):
        ModelBundle.load(d)


# What serving does with a bundle: load it, encode one request, score it. None of it may need
# polars (a second of import and hundreds of MB per worker, for nothing on the request path).
_SERVING_SIDE = """
import sys
from datetime import UTC, datetime
from pathlib import Path

from features.bundle import ModelBundle
from features.online import OnlineEncoder, PairEncoder

bundle = ModelBundle.load(Path(sys.argv[1]))
request = {"event_time": datetime(2026, 1, 5, 14, tzinfo=UTC), "channel": "web",
           "publisher": "p3", "slot_width": 300, "slot_height": 250, "floor_price": 2.0}
one = OnlineEncoder(bundle.spec)
first, second = PairEncoder(one, one).encode_lists(request)
assert first == second == one.encode_list(request)
p = bundle.predict_matrix(one.encode(request).reshape(1, -1))
assert 0.0 < float(p[0]) < 1.0, p
{extra}
loaded = sorted(m for m in sys.modules if m == "polars" or m.startswith("polars."))
assert not loaded, f"polars was imported: {loaded[:3]}"
print("ok")
"""


def _serving_side(bundle_dir: Path, extra: str = "") -> subprocess.CompletedProcess[str]:
    code = textwrap.dedent(_SERVING_SIDE.replace("{extra}", extra))
    return subprocess.run(
        [sys.executable, "-c", code, str(bundle_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_loading_a_bundle_and_encoding_a_request_never_import_polars(tmp_path: Path) -> None:
    bundle, _ = _bundle()
    d = bundle.save(tmp_path / "b")
    done = _serving_side(d)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
    # negative control: the check sees polars when something on the path does import it
    caught = _serving_side(d, extra="import features.spec_fit")
    assert caught.returncode != 0 and "polars was imported" in caught.stderr, caught.stderr


def _mlmodel(model_dir: Path, path: str) -> None:
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "MLmodel").write_text(
        "flavors:\n  python_function:\n    artifacts:\n"
        f"      {BUNDLE_ARTIFACT}:\n        path: {path}\n        uri: /somewhere/else\n"
    )


def test_find_bundle_dir_reads_the_path_mlflow_recorded(tmp_path: Path) -> None:
    _mlmodel(tmp_path / "m", "artifacts/my_bundle_dir")
    assert find_bundle_dir(tmp_path / "m") == (tmp_path / "m" / "artifacts" / "my_bundle_dir")


@pytest.mark.parametrize(
    "mlmodel",
    [
        None,  # no MLmodel file
        "flavors: {}\n",  # no pyfunc flavour
        "flavors: [unclosed\n",  # not YAML
        "just text\n",  # YAML, not a mapping
        "escape",  # a recorded path outside the download
    ],
)
def test_find_bundle_dir_falls_back_to_the_contract_path(
    tmp_path: Path, mlmodel: str | None
) -> None:
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    if mlmodel == "escape":
        _mlmodel(model_dir, "../../etc")
    elif mlmodel is not None:
        (model_dir / "MLmodel").write_text(mlmodel)
    assert find_bundle_dir(model_dir) == model_dir / "artifacts" / BUNDLE_ARTIFACT
