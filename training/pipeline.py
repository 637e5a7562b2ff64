"""One training, end to end: data -> time split -> spec -> LightGBM -> calibration -> test
metrics -> bundle -> MLflow run and registered version.

The CLI, the quickstart, promote and the benches all go through here, so there is one
definition of what "a trained bidopt model" is. MLflow I/O is delegated to `tracking`.
"""

from __future__ import annotations

import atexit
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import polars as pl

from features.batch import encode_matrix
from features.bundle import ModelBundle
from features.logset import Batches
from features.spec import FeatureSpec
from features.spec_fit import fit_spec, out_of_fold_lifts
from training.batch_fit import Counter, FrameTrain, TrainRows, count_rows, spec_of
from training.calibrate import CalibrationChoice, choose_calibrator
from training.config import Target, TrainConfig
from training.delay import DelayedSet, build, fit_em, targets
from training.evaluate import Evaluation, evaluate
from training.fit import FitResult, feature_importance, fit_booster
from training.splits import LABEL, Split, data_cutoff, make_split
from training.trainset import encoded_batches, release
from training.windows import windows_for

TRUTH = {"ctr": "true_ctr", "cvr": "true_cvr"}
# fit_booster's signature: (x, y, x_valid, y_valid, spec, lightgbm config, on_iteration, weight=)
Fitter = Callable[..., FitResult]
STEPS = ("split", "features", "fit", "calibrate", "evaluate", "register")


@dataclass(frozen=True)
class DataSource:
    """Where training rows come from; recorded in the run so promote can re-create them."""

    kind: Literal["synth", "logs"] = "synth"
    rows: int = 500_000
    seed: int = 0
    path: str = ""
    source: str = "auto"
    days: int = 14  # synthetic logs' time span

    def params(self) -> dict[str, Any]:
        return {"kind": self.kind, "rows_requested": self.rows, "seed": self.seed,
                "path": self.path, "format": self.source, "days": self.days}  # fmt: skip

    @classmethod
    def from_fingerprint(cls, fp: Mapping[str, Any]) -> DataSource:
        kind = str(fp.get("kind", ""))
        if kind not in ("synth", "logs"):
            raise ValueError(f"the run does not record its data source (data.kind={kind!r})")
        return cls(
            kind=kind,  # type: ignore[arg-type]
            rows=int(fp.get("rows_requested") or 0),
            seed=int(fp.get("seed") or 0),
            path=str(fp.get("path") or ""),
            source=str(fp.get("format") or "auto"),
            days=int(fp.get("days") or 14),  # runs from before `days` was recorded: 14
        )


def load_data(src: DataSource, stage: Path | None = None) -> tuple[Batches, dict[str, Any]]:
    """The validated canonical log as batches, and its fingerprint (source, counts, time span,
    content hash). Logs (a file, folder or glob) are validated once into `stage` (a temporary
    folder removed at exit by default), then read from there batch by batch."""
    from features.ingest import LoadResult, fingerprint
    from features.logset import FrameBatches, ingest

    if src.kind == "synth":
        from features.synth import generate

        if src.rows <= 0:
            raise ValueError(f"--rows must be positive, got {src.rows}")
        frame = generate(src.rows, seed=src.seed, days=src.days)
        result = LoadResult(frame, frame.height, frame.height, 0, None, "synth")
        return FrameBatches(frame), {**fingerprint(result), **src.params()}
    if stage is None:
        stage = Path(tempfile.mkdtemp(prefix="bidopt-stage-"))
        atexit.register(shutil.rmtree, stage, ignore_errors=True)
    loaded = ingest(src.path, stage, source=src.source)
    if loaded.rows_used == 0:
        raise ValueError(f"{src.path}: no usable rows ({loaded.rows_quarantined} quarantined)")
    fp = {**loaded.fingerprint(), **src.params()}
    if loaded.quarantine_paths:
        fp["quarantine_path"] = ", ".join(str(p) for p in loaded.quarantine_paths)
    return loaded.logs, fp


class Engine(Protocol):
    """Where a model was trained, as the run records it (training.cluster.ClusterInfo)."""

    def params(self) -> dict[str, Any]: ...

    def tags(self) -> dict[str, str]: ...


class Reporter:
    """Progress callbacks; the default reports nothing (tests, benches)."""

    def step(self, name: str) -> None:
        """Called when a pipeline step starts."""

    def iteration(self, done: int, total: int) -> None:
        """Called after each boosting round."""


@dataclass
class TrainOutcome:
    target: Target
    metrics: dict[str, float]
    notes: list[str]
    calibration: CalibrationChoice
    fit: FitResult
    bundle: ModelBundle
    split_info: dict[str, int]
    version: Any = None  # tracking.RegisteredVersion when registered
    timings: dict[str, float] = field(default_factory=dict)
    delayed: DelayedSet | None = None  # pCVR under cvr.delay naive or em


def labels(df: pl.DataFrame) -> np.ndarray:
    return df.get_column(LABEL).cast(pl.Float64).to_numpy()


def window_share(attribution_days: float) -> float:
    """P(delay <= window | conversion) under the synthetic generator's delay distribution.

    `true_cvr` is the probability of a conversion at any time; the pCVR label only counts those
    inside the attribution window, so the oracle for that label is true_cvr times this share.
    Advertisers' conversion speeds reshape delays inside 7 days only, so the share is exact for
    every advertiser at 7 days (the default window) and an average at other windows.
    """
    from features.synth_truth import DELAY_MAX_DAYS, DELAY_WITHIN_DAY, DELAY_WITHIN_HOUR

    early = DELAY_WITHIN_HOUR + DELAY_WITHIN_DAY  # all within a day
    if attribution_days < 1:
        return early * attribution_days  # rough below a day; windows that short are unusual
    late = min(math.log(attribution_days) / math.log(DELAY_MAX_DAYS), 1.0)
    return early + (1 - early) * late


def score_window(
    bundle: ModelBundle,
    window: pl.DataFrame,
    target: Target,
    attribution_days: float = 7.0,
    threads: int = 1,
) -> tuple[Evaluation, np.ndarray]:
    """All test metrics of a bundle on a labelled window (used by training and promote)."""
    p = bundle.predict_frame(window, threads)  # rows scored one by one: threads change nothing
    truth_col = TRUTH[target]
    truth = None
    if truth_col in window.columns and window.get_column(truth_col).null_count() == 0:
        truth = window.get_column(truth_col).to_numpy()
        if target == "cvr":
            truth = truth * window_share(attribution_days)
    channels = window.get_column("channel").to_numpy()
    return evaluate(labels(window), p, channels=channels, truth=truth), p


def split_for(df: pl.DataFrame, cfg: TrainConfig) -> tuple[Split, dict[str, int]]:
    """The in-memory split of a frame (benches comparing models on one split)."""
    return make_split(
        df,
        cfg.target,
        train_frac=cfg.train_frac,
        valid_frac=cfg.valid_frac,
        attribution_days=cfg.attribution_days,
    )


def delayed_for(
    df: pl.DataFrame, split: Split, cfg: TrainConfig, cutoff: datetime | None = None
) -> DelayedSet | None:
    """pCVR's training rows under `cvr.delay` naive or em (None: drop, or a pCTR model).
    `df` holds at least every click; `cutoff` is the log's (default: df's newest row)."""
    if cfg.target != "cvr" or cfg.delay == "drop":
        return None
    cvr = cfg.section("cvr")
    return build(
        split.train,
        df,
        cfg.delay,
        cfg.attribution_days,
        data_cutoff(df) if cutoff is None else cutoff,
        by=str(cvr["delay_by"]),
        delay_prior=float(cvr["delay_prior"]),
    )


def fit_bundle(
    split: Split,
    cfg: TrainConfig,
    reporter: Reporter | None = None,
    delayed: DelayedSet | None = None,
    *,
    train_rows: TrainRows | None = None,
    counter: Counter | None = None,
    fitter: Fitter = fit_booster,
) -> tuple[ModelBundle, FitResult, CalibrationChoice, dict[str, float]]:
    """Spec on the training window only, LightGBM with early stopping, calibration.

    The training rows are `train_rows` (batches read again as needed; `counter` holds their
    counts when they were counted while cut out) or `split.train`; they are counted for the
    spec and encoded batch by batch into LightGBM's Dataset, never as one matrix
    (`training.batch_fit`). With `delayed` (pCVR under cvr.delay naive or em: clicks only, a
    small frame), the training rows are its frame (the matured window plus the clicks still
    open at the cut-off), encoded in memory, since EM refits on reweighted copies of them;
    validation and calibration stay on the matured validation window, whose labels are final.
    """
    rep = reporter or Reporter()
    timings: dict[str, float] = {}
    t = time.perf_counter()
    rep.step("features")
    valid = split.valid
    if 0 < cfg.max_valid_rows < valid.height:  # thinned evenly, so still in time order
        valid = valid.gather_every(math.ceil(valid.height / cfg.max_valid_rows))
    y_valid = labels(valid)
    if delayed is None:
        rows = train_rows if train_rows is not None else FrameTrain(split.train)
        counter = counter if counter is not None else count_rows(rows, cfg.section("spec"))
        fitted = spec_of(counter)
        spec: FeatureSpec = fitted.spec
        x_valid = encode_matrix(valid, spec)
        parts = encoded_batches(rows, spec, fitted.tables, fitted.bounds)
        timings["features_s"] = time.perf_counter() - t
        rep.step("fit")
        fit = fitter(
            parts,
            counter.y(),
            x_valid,
            y_valid,
            spec,
            cfg.lightgbm,
            rep.iteration,
            on_built=lambda: release(parts),
        )
    else:
        train = delayed.frame
        spec = fit_spec(train, label=LABEL, **cfg.section("spec"))
        # the training rows' segment lifts are out of fold: a row never sees its own label
        x_train = encode_matrix(train, spec, given=out_of_fold_lifts(train, spec, LABEL))
        x_valid = encode_matrix(valid, spec)
        timings["features_s"] = time.perf_counter() - t
        rep.step("fit")

        def fit_rows(x: np.ndarray, y: np.ndarray, w: np.ndarray | None) -> FitResult:
            return fitter(x, y, x_valid, y_valid, spec, cfg.lightgbm, rep.iteration, weight=w)

        if delayed.mode == "em":
            fit, _ = fit_em(delayed, x_train, cfg.em_iterations, fit_rows)
        else:
            rows_ = targets(delayed)
            fit = fit_rows(x_train[rows_.rows], rows_.y, rows_.weight)
        del x_train
    timings["fit_s"] = time.perf_counter() - t - timings["features_s"]  # EM: all its fits
    timings["dataset_s"] = fit.build_seconds  # of fit_s (EM: its last fit's)
    bundle, choice, timings["calibrate_s"] = calibrated_bundle(fit, spec, y_valid, cfg, rep)
    return bundle, fit, choice, timings


def calibrated_bundle(
    fit: FitResult, spec: FeatureSpec, y_valid: np.ndarray, cfg: TrainConfig, rep: Reporter
) -> tuple[ModelBundle, CalibrationChoice, float]:
    """The calibrator chosen on the validation window, and the bundle (and its seconds)."""
    t = time.perf_counter()
    rep.step("calibrate")
    choice = choose_calibrator(fit.valid_pred, y_valid, cfg.calibration_methods)
    seconds = time.perf_counter() - t
    meta = {
        "name": f"bidopt-{cfg.target}",
        "target": cfg.target,
        "trained_at": datetime.now(UTC).isoformat(),
        "best_iteration": fit.best_iteration,
        "calibration": choice.method,
        "valid_rows_used": len(y_valid),
    }
    if cfg.target == "cvr":
        meta["delay"] = cfg.delay
    bundle = ModelBundle(booster=fit.booster, spec=spec, calibrator=choice.calibrator, meta=meta)
    return bundle, choice, seconds


def train(
    data: pl.DataFrame | Batches,
    fingerprint: Mapping[str, Any],
    cfg: TrainConfig,
    *,
    reporter: Reporter | None = None,
    register: bool = True,
    workdir: Path | None = None,
    fitter: Fitter = fit_booster,
    engine: Engine | None = None,
) -> TrainOutcome:
    """Train, evaluate on the test window and (by default) log and register the model.

    `data` is a frame or batched logs (`features.logset`): the same path either way. `fitter`
    fits the booster (`training.dask_train` passes one training on a Dask cluster); `engine`
    adds its params and tags to the run."""
    rep = reporter or Reporter()
    rep.step("split")
    t0 = time.perf_counter()
    w = windows_for(data, cfg)
    split, info = w.split, dict(w.info)
    delayed = None
    if w.clicks is not None:
        delayed = delayed_for(w.clicks, split, cfg, w.cutoff)
    if delayed is not None:
        info |= delayed.info
        info["rows_train_used"] = delayed.frame.height
    split_s = time.perf_counter() - t0
    bundle, fit, choice, timings = fit_bundle(
        split, cfg, rep, delayed, train_rows=w.train_rows, counter=w.counter, fitter=fitter
    )
    timings["split_s"] = split_s
    return finish(
        split, info, (bundle, fit, choice, timings), fingerprint, cfg, rep, register=register,
        workdir=workdir, delayed=delayed, engine=engine,
    )  # fmt: skip


def finish(
    split: Split,
    info: dict[str, int],
    fitted: tuple[ModelBundle, FitResult, CalibrationChoice, dict[str, float]],
    fingerprint: Mapping[str, Any],
    cfg: TrainConfig,
    rep: Reporter,
    *,
    register: bool = True,
    workdir: Path | None = None,
    delayed: DelayedSet | None = None,
    engine: Engine | None = None,
) -> TrainOutcome:
    """Test-window metrics of a fitted bundle, then (by default) its run and version."""
    bundle, fit, choice, timings = fitted
    t = time.perf_counter()
    rep.step("evaluate")
    threads = int(cfg.lightgbm["num_threads"])
    evaluation, p_test = score_window(bundle, split.test, cfg.target, cfg.attribution_days, threads)
    metrics = evaluation.metrics
    notes = [*choice.notes, *evaluation.notes]
    timings["evaluate_s"] = time.perf_counter() - t
    examples = _examples(split.test)
    meta = {
        **bundle.meta,
        "metrics": {k: v for k, v in metrics.items() if np.isfinite(v)},
        "input_example": examples,
    }
    bundle = ModelBundle(bundle.booster, bundle.spec, bundle.calibrator, meta)
    outcome = TrainOutcome(
        cfg.target, metrics, notes, choice, fit, bundle, info, timings=timings, delayed=delayed
    )
    if register:
        rep.step("register")
        t = time.perf_counter()
        outcome.version = _register(outcome, fingerprint, cfg, split, p_test, workdir, engine)
        timings["register_s"] = time.perf_counter() - t
    return outcome


def _examples(test: pl.DataFrame) -> list[dict[str, Any]]:
    from training.records import request_examples

    return request_examples(test, 5)


def _register(
    outcome: TrainOutcome,
    fingerprint: Mapping[str, Any],
    cfg: TrainConfig,
    split: Split,
    p_test: np.ndarray,
    workdir: Path | None,
    engine: Engine | None = None,
) -> Any:
    from training import plots, tracking
    from training.delay import matured_delays

    with tempfile.TemporaryDirectory(prefix="bidopt-train-", dir=workdir) as tmp:
        root = Path(tmp)
        bundle_dir = outcome.bundle.save(root / "bundle")
        files = [
            plots.calibration_curve(
                labels(split.test),
                p_test,
                root / "calibration_curve.png",
                f"{cfg.target}: calibration on the test window",
            ),
            plots.feature_importance(
                feature_importance(outcome.bundle.booster),
                root / "feature_importance.png",
                f"{cfg.target}: feature importance (gain)",
            ),
        ]
        delay = outcome.delayed.delay if outcome.delayed is not None else None
        if delay is not None:
            files.append(
                plots.delay_fit(
                    delay,
                    matured_delays(split.train)[0],
                    root / "delay_fit.png",
                    cfg.attribution_days,
                )
            )
        params: dict[str, Any] = {**cfg.flat(), "target": cfg.target, "engine": "local"}
        params |= engine.params() if engine is not None else {}
        if delay is not None:
            params |= delay.params()
        params |= {
            "calibration.chosen": outcome.calibration.method,
            "best_iteration": outcome.fit.best_iteration,
            "feature_count": len(outcome.bundle.spec.names),
            "valid_rows_used": outcome.bundle.meta["valid_rows_used"],
        }
        params |= {
            f"calibration.crossfit_logloss_{m}": v for m, v in outcome.calibration.scores.items()
        }
        fp = {**fingerprint, **{f"split_{k}": v for k, v in outcome.split_info.items()}}
        fp |= {
            "test_start": split.test_start.isoformat(),
            "valid_start": split.valid_start.isoformat(),
        }
        return tracking.log_training(
            target=cfg.target,
            params=params,
            metrics=outcome.metrics,
            fingerprint=fp,
            bundle_dir=bundle_dir,
            input_example=outcome.bundle.meta["input_example"],
            files=files,
            notes=outcome.notes,
            tags=engine.tags() if engine is not None else {"bidopt.engine": "local"},
        )
