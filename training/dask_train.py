"""`bidopt train ctr|cvr --dask ADDRESS`: the same training, with the rows on a Dask cluster.

pCTR: the partitions are cleaned and kept on the workers (`dask_data`), the time cuts are the
local path's exactly, the spec is fitted from counts made on each worker and merged in a tree
(`features.spec_fit.count_batch` / `SpecCounts.merge` / `spec_from_counts`), each partition
is encoded where it lives by `features.batch.encode_matrix` with its out-of-fold lifts, and
`lightgbm.dask.DaskLGBMClassifier` trains on the encoded chunks in place. Only the validation
and test windows come to the client. pCVR trains on clicks (about a hundredth of the rows):
they are gathered and the local pipeline runs on them, with `DaskFitter` as its fitter, so
the delayed-feedback EM's fits run on the cluster one after the other.

LightGBM's Dask interface has no early stopping (a worker's own validation rows would stop it
alone and hang the others), so all `num_boost_round` trees are grown, the validation logloss
of every prefix is computed on the client from the trees' leaves (`valid_curve`), the local
path's stopping rule picks the iteration, and the forest is cut there: the same choice early
stopping would have made, for the cost of the rounds past it.

Calibration, metrics, plots and registration are `training.pipeline`'s: the bundle is the same
format, and the run records the cluster (`ClusterInfo.params` / `.tags`).
"""

from __future__ import annotations

import itertools
import math
import operator
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import polars as pl

from features.batch import encode_matrix
from features.spec import FeatureSpec
from features.spec_fit import (
    SpecCounts,
    count_batch,
    fold_bounds,
    fold_lifts_from_counts,
    lift_feature,
    oof_lift_given,
    row_blocks,
    spec_from_counts,
)
from training import dask_data
from training.cluster import Cluster, ClusterError, free_ports, guarded_fit
from training.config import TrainConfig
from training.fit import FitResult, booster_params
from training.pipeline import (
    DataSource,
    Reporter,
    TrainOutcome,
    calibrated_bundle,
    finish,
    labels,
)
from training.pipeline import train as train_local
from training.splits import LABEL, Split
from training.windows import _keep  # the local path's thinning of the test window

FOLDS = 5  # as spec_fit.out_of_fold_lifts
_EPS = 1e-15  # LightGBM's binary_logloss clips probabilities here


def valid_curve(
    booster: lgb.Booster, x: np.ndarray, y: np.ndarray, sigmoid: float = 1.0, block: int = 64
) -> tuple[list[float], np.ndarray]:
    """The validation logloss after each tree, and the raw scores after all of them.

    Read from each tree's leaf values (`pred_leaf` on blocks of trees), so the validation rows
    are walked through the forest once, not once per prefix."""
    trees = booster.dump_model(num_iteration=-1)["tree_info"]
    raw = np.zeros(x.shape[0])
    curve: list[float] = []
    for start in range(0, len(trees), block):
        n = min(block, len(trees) - start)
        leaves = booster.predict(x, pred_leaf=True, start_iteration=start, num_iteration=n)
        leaves = np.asarray(leaves, dtype=np.int64).reshape(x.shape[0], n)
        for j in range(n):
            t = start + j
            values = np.array(
                [booster.get_leaf_output(t, k) for k in range(trees[t]["num_leaves"])]
            )
            raw += values[leaves[:, j]]
            p = np.clip(1.0 / (1.0 + np.exp(-sigmoid * raw)), _EPS, 1 - _EPS)
            curve.append(float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p))))
    return curve, raw


def stopping_point(curve: list[float], rounds: int) -> int:
    """The iteration `lightgbm.early_stopping(rounds)` would keep (1-based)."""
    best, best_score = 0, math.inf
    for i, score in enumerate(curve):
        if score < best_score:
            best, best_score = i, score
        elif rounds > 0 and i - best >= rounds:
            break
    return best + 1 if rounds > 0 else len(curve)


def trimmed_fit(
    booster: lgb.Booster,
    x_valid: np.ndarray,
    y_valid: np.ndarray,
    config: Mapping[str, Any],
    seconds: float,
) -> FitResult:
    """The forest cut where early stopping would have stopped it, with its validation scores."""
    sigmoid = float(config.get("sigmoid", 1.0))
    curve, _ = valid_curve(booster, x_valid, y_valid, sigmoid)
    best = stopping_point(curve, int(config.get("early_stopping_rounds", 50)))
    trimmed = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))
    raw = trimmed.predict(x_valid, raw_score=True)
    stop = min(len(curve), best + int(config.get("early_stopping_rounds", 50)))
    return FitResult(
        booster=trimmed,
        best_iteration=best,
        valid_logloss=curve[:stop],
        seconds=seconds,
        valid_pred=1.0 / (1.0 + np.exp(-sigmoid * raw)),
    )


def placed(futures: list[Any], dask_cfg: Mapping[str, Any]) -> None:
    """Wait for data on the workers, within the fit's bound (a worker lost while the data move
    would otherwise leave the wait open)."""
    from distributed import wait

    bound = float(dask_cfg["fit_timeout_s"])
    try:
        wait(futures, timeout=bound)
    except TimeoutError:
        raise ClusterError(
            f"the training rows did not reach the Dask workers within {bound:g} s "
            "(dask.fit_timeout_s)"
        ) from None


def _running(worker: Mapping[str, Any]) -> bool:
    return str(worker.get("status", "running")).lower().endswith("running")


def _has_weight(xy: tuple[np.ndarray, np.ndarray, np.ndarray | None]) -> bool:
    return xy[2] is not None


def _dask_array(futures: list[Any], shapes: list[tuple[int, ...]]) -> Any:
    import dask.array as da
    from dask import delayed

    chunks = [
        da.from_delayed(delayed(f), shape=s, dtype=np.float64)
        for f, s in zip(futures, shapes, strict=True)
    ]
    return da.concatenate(chunks, axis=0)


def fit_on_cluster(
    cluster: Cluster,
    xy: list[Any],
    rows: list[int],
    x_valid: np.ndarray,
    y_valid: np.ndarray,
    spec: FeatureSpec,
    config: Mapping[str, Any],
    dask_cfg: Mapping[str, Any],
) -> FitResult:
    """`DaskLGBMClassifier` on the chunks `xy` (futures of (x, y[, w]) held on the workers).

    One fit at a time per cluster (`guarded_fit`'s lock), explicit free listening ports and
    LightGBM's network time_out, the chunks already in worker memory (persisted) before it.
    """
    from lightgbm.dask import DaskLGBMClassifier

    client = cluster.client
    placed(xy, dask_cfg)
    k = len(spec.names)
    get = [dask_data.each(client, operator.itemgetter(i), xy) for i in range(3)]
    x = _dask_array(get[0], [(n, k) for n in rows])
    y = _dask_array(get[1], [(n,) for n in rows])
    w = _dask_array(get[2], [(n,) for n in rows])
    has_weight = any(client.gather(dask_data.each(client, _has_weight, xy)))
    held = {ws[0] for ws in client.who_has(xy).values() if ws}
    holders = [w for w in dask_data.by_name(cluster.workers()) if w in held]
    params = {k: v for k, v in booster_params(config).items() if k != "num_threads"}
    model = DaskLGBMClassifier(
        client=client,
        n_estimators=int(config.get("num_boost_round", 1000)),
        time_out=int(dask_cfg["time_out_minutes"]),
        machines=free_ports(cluster, holders),
        tree_learner="data",
        **params,
    )

    def run() -> lgb.Booster:
        model.fit(
            x,
            y,
            sample_weight=w if has_weight else None,
            feature_name=spec.names,
            categorical_feature=spec.categorical,
        )
        return model.to_local().booster_

    start = time.perf_counter()
    booster = guarded_fit(
        cluster,
        run,
        timeout_s=float(dask_cfg["fit_timeout_s"]),
        pause_grace_s=float(dask_cfg["pause_grace_s"]),
        lock_timeout_s=float(dask_cfg["lock_timeout_s"]),
    )
    return trimmed_fit(booster, x_valid, y_valid, config, time.perf_counter() - start)


class DaskFitter:
    """`fit_booster`'s signature, training on the cluster: the matrix is scattered in one chunk
    per worker (pCVR's clicks; its EM fits call this once per iteration)."""

    def __init__(self, cluster: Cluster, dask_cfg: Mapping[str, Any]) -> None:
        self.cluster = cluster
        self.dask_cfg = dict(dask_cfg)

    def __call__(
        self,
        x_train: np.ndarray | Sequence[lgb.Sequence],
        y_train: np.ndarray,
        x_valid: np.ndarray,
        y_valid: np.ndarray,
        spec: FeatureSpec,
        config: Mapping[str, Any],
        on_iteration: Callable[[int, int], None] | None = None,
        *,
        weight: np.ndarray | None = None,
        on_built: Callable[[], None] | None = None,
    ) -> FitResult:
        if not isinstance(x_train, np.ndarray):  # encoded batches: pCVR's clicks, small
            x_train = np.concatenate([s[0 : len(s)] for s in x_train]) if x_train else np.empty(0)
            if on_built is not None:
                on_built()
        if x_train.shape[0] == 0 or x_valid.shape[0] == 0:
            raise ValueError("cannot fit on an empty training or validation window")
        workers = sorted(w for w, d in self.cluster.workers().items() if _running(d))
        n = x_train.shape[0]
        bounds = np.linspace(0, n, min(len(workers), n) + 1).astype(int)
        xy, rows = [], []
        for i, (lo, hi) in enumerate(itertools.pairwise(bounds)):
            part = (x_train[lo:hi], y_train[lo:hi], None if weight is None else weight[lo:hi])
            xy.append(self.cluster.client.scatter(part, workers=[workers[i]], hash=False))
            rows.append(int(hi - lo))
        return fit_on_cluster(self.cluster, xy, rows, x_valid, y_valid, spec, config, self.dask_cfg)


def _count(
    frame: pl.DataFrame, offset: int, *, t1: Any, bounds: list[int], lift_key: str
) -> SpecCounts:
    train = dask_data.train_rows(frame, t1)
    blocks = row_blocks(offset, train.height, bounds)
    return count_batch(train, label=LABEL, lift_key=lift_key, blocks=blocks)


def _merge(a: SpecCounts, b: SpecCounts) -> SpecCounts:
    return a.merge(b)


def merged_counts(client: Any, futures: list[Any]) -> SpecCounts:
    """Merge the per-partition counts pairwise on the workers; only the total travels here."""
    level = list(futures)
    while len(level) > 1:
        pairs = dask_data.each(client, _merge, level[0::2], level[1::2])
        level = pairs + ([level[-1]] if len(level) % 2 else [])
    return client.gather(level[0])  # type: ignore[no-any-return]


def _encode(
    frame: pl.DataFrame,
    offset: int,
    model: tuple[FeatureSpec, list[Any]],
    *,
    t1: Any,
    bounds: list[int],
) -> tuple[np.ndarray, np.ndarray, None]:
    spec, tables = model
    train = dask_data.train_rows(frame, t1)
    given = oof_lift_given(train, spec, tables, row_blocks(offset, train.height, bounds))
    y = train.get_column(LABEL).cast(pl.Float64).to_numpy()
    return encode_matrix(train, spec, given=given), y, None


def train_ctr(
    cluster: Cluster,
    parts: dask_data.Parts,
    fingerprint: Mapping[str, Any],
    cfg: TrainConfig,
    rep: Reporter,
    *,
    register: bool = True,
    workdir: Path | None = None,
) -> TrainOutcome:
    client = cluster.client
    rep.step("split")
    t0 = time.perf_counter()
    t1, t2 = dask_data.cut_points(client, parts, cfg.train_frac, cfg.valid_frac)
    per_part = dask_data.window_counts(client, parts, t1, t2)
    info = {"rows_shown": parts.rows}
    for key in per_part[0]:
        info[key] = sum(p[key] for p in per_part)
    for name in ("train", "valid", "test"):
        if info[f"rows_{name}"] == 0:
            raise dask_data.SplitError(
                f"the {'training' if name == 'train' else name} window is empty: too few "
                "distinct event_time values to split by time"
            )
    valid = dask_data.collect_window(client, parts, t1, t2).sort("event_time", maintain_order=True)
    test = dask_data.collect_window(client, parts, t2, None)
    test = test.filter(pl.Series(_keep(test.get_column("event_time"), cfg.max_test_rows)))
    if 0 < cfg.max_valid_rows < valid.height:  # thinned evenly, so still in time order
        valid = valid.gather_every(math.ceil(valid.height / cfg.max_valid_rows))
    info |= {"rows_valid_kept": valid.height}
    info |= {"rows_test_kept": test.height}
    split = Split(train=test.clear(), valid=valid, test=test, valid_start=t1, test_start=t2)
    timings = {"split_s": time.perf_counter() - t0}

    t = time.perf_counter()
    rep.step("features")
    sizes = [p["rows_train"] for p in per_part]
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(int).tolist()
    bounds = fold_bounds(info["rows_train"], FOLDS)
    spec_cfg = cfg.section("spec")
    key = str(spec_cfg["lift_key"])
    count = partial(_count, t1=t1, bounds=bounds, lift_key=key)
    counted = dask_data.each(client, count, parts.frames, offsets)
    counts = merged_counts(client, counted)
    del counted
    spec = spec_from_counts(counts, **spec_cfg)
    tables = []
    if lift_feature(spec) is not None:
        tables = fold_lifts_from_counts(counts, float(spec_cfg["lift_prior"]), FOLDS)
    keep = [i for i, n in enumerate(sizes) if n > 0]
    model = client.scatter((spec, tables), broadcast=True, hash=False)
    xy = dask_data.each(
        client,
        partial(_encode, t1=t1, bounds=bounds),
        [parts.frames[i] for i in keep],
        [offsets[i] for i in keep],
        [model] * len(keep),
    )
    placed(xy, cfg.section("dask"))
    parts.frames = []  # every window is out of the partitions now: free the workers' copies
    x_valid, y_valid = encode_matrix(valid, spec), labels(valid)
    timings["features_s"] = time.perf_counter() - t
    rep.step("fit")
    t = time.perf_counter()
    fit = fit_on_cluster(
        cluster,
        xy,
        [sizes[i] for i in keep],
        x_valid,
        y_valid,
        spec,
        cfg.lightgbm,
        cfg.section("dask"),
    )
    del xy
    timings["fit_s"] = time.perf_counter() - t
    bundle, choice, timings["calibrate_s"] = calibrated_bundle(fit, spec, y_valid, cfg, rep)
    return finish(
        split, info, (bundle, fit, choice, timings), fingerprint, cfg, rep, register=register,
        workdir=workdir, engine=cluster.info,
    )  # fmt: skip


def train(
    cluster: Cluster,
    logs: Path,
    cfg: TrainConfig,
    *,
    reporter: Reporter | None = None,
    register: bool = True,
    workdir: Path | None = None,
) -> tuple[TrainOutcome, dict[str, Any]]:
    """Train `cfg.target` on the cluster from partitioned Parquet logs; (outcome, fingerprint)."""
    rep = reporter or Reporter()
    ddf = dask_data.read_logs(logs)
    parts = dask_data.load_parts(cluster.client, ddf, cfg.target, logs)
    src = DataSource(kind="logs", path=str(logs), source="canonical")
    fp = {**dask_data.fingerprint(parts), **src.params()}
    if cfg.target == "ctr":
        outcome = train_ctr(cluster, parts, fp, cfg, rep, register=register, workdir=workdir)
    else:
        clicks = dask_data.gather_all(cluster.client, parts)
        del parts
        fitter = DaskFitter(cluster, cfg.section("dask"))
        outcome = train_local(
            clicks, fp, cfg, reporter=rep, register=register, workdir=workdir,
            fitter=fitter, engine=cluster.info,
        )  # fmt: skip
    return outcome, fp


__all__ = ["DaskFitter", "fit_on_cluster", "stopping_point", "train", "valid_curve"]
