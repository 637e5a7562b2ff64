"""Training's only MLflow module: runs, registration, aliases, and the reads promote needs.

Everything else in training is pure and hands this module plain values. The tracking URI rule
is the same for every bidopt command and the service: `features.store_uri`. The bundle travels
as the pyfunc artifact `features.bundle.BUNDLE_ARTIFACT` and is found in a download by
`features.bundle.find_bundle_dir`, as serving finds it.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.types.schema import AnyType, Array, ColSpec, Schema

from features.bundle import BUNDLE_ARTIFACT, ModelBundle, find_bundle_dir
from features.schema import REQUEST_FIELDS, SCHEMA
from features.store_uri import default_tracking_uri
from training import pyfunc_model
from training.config import Target

EXPERIMENT = "bidopt"
MODEL_NAMES: dict[str, str] = {"ctr": "bidopt-ctr", "cvr": "bidopt-cvr"}
CHALLENGER, CHAMPION = "challenger", "champion"
PACKAGES = ("bidopt", "lightgbm", "mlflow", "polars", "numpy", "scikit-learn", "pandas")


class TrackingError(ValueError):
    """A registry read that cannot be answered (no such model, alias or artifact)."""


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: str
    run_id: str
    model_uri: str  # models:/name/version


def _sqlite_dir(uri: str) -> Path | None:
    """The directory of a SQLite store's file, where its artifacts go too."""
    if not uri.startswith("sqlite:"):
        return None
    path = unquote(urlparse(uri).path)
    if uri.startswith("sqlite:////"):
        path = "/" + path.lstrip("/")
    elif uri.startswith("sqlite:///"):
        path = path[1:]
    return Path(path).resolve().parent


def connect(uri: str | None = None) -> str:
    """Point MLflow (tracking and registry) at the store, creating a SQLite store's folder."""
    uri = uri or default_tracking_uri()
    folder = _sqlite_dir(uri)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def ensure_experiment(name: str = EXPERIMENT, uri: str | None = None) -> str:
    """The experiment's id; a new one on SQLite keeps its artifacts beside the store file."""
    uri = uri or mlflow.get_tracking_uri()
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    folder = _sqlite_dir(uri)
    location = (folder / "artifacts" / name).as_uri() if folder is not None else None
    return client.create_experiment(name, artifact_location=location)


def git_commit() -> str | None:
    """HEAD of the repository holding this code, when there is one with a commit."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and len(commit) == 40 else None


def package_versions() -> dict[str, str]:
    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = "not installed"
    return versions


def _pip_requirements() -> list[str]:
    """Explicit, so MLflow does not load the model in a subprocess to infer them."""
    v = package_versions()
    return [f"{p}=={v[p]}" for p in PACKAGES if p != "bidopt" and v[p] != "not installed"]


def _example_frame(examples: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame([{name: e.get(name) for name in REQUEST_FIELDS} for e in examples])


def _signature() -> ModelSignature:
    """Every request field optional; numbers typed `Any`.

    MLflow's schema enforcement refuses int64 -> double ("not safe") and an integer column with
    a missing value (pandas turns it into floats), so typed numeric columns would reject
    requests the model scores fine. The pyfunc casts each field to the canonical schema itself.
    """
    cols = []
    for name in REQUEST_FIELDS:
        dtype = SCHEMA[name]
        if name == "user_segments":
            kind: Any = Array("string")
        elif dtype.is_numeric():
            kind = AnyType()
        else:
            kind = "string"  # event_time travels as ISO-8601 text
        cols.append(ColSpec(kind, name, required=False))
    return ModelSignature(inputs=Schema(cols), outputs=Schema([ColSpec("double")]))


def log_training(
    *,
    target: Target,
    params: Mapping[str, Any],
    metrics: Mapping[str, float],
    fingerprint: Mapping[str, Any],
    bundle_dir: Path,
    input_example: Sequence[Mapping[str, Any]],
    files: Sequence[Path] = (),
    notes: Sequence[str] = (),
    experiment: str = EXPERIMENT,
    uri: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> RegisteredVersion:
    """One run: params, metrics, fingerprint, plots; the pyfunc model; a registered version.

    The new version gets the alias `challenger`; only `promote` moves `champion`.
    """
    connect(uri)
    experiment_id = ensure_experiment(experiment)
    name = MODEL_NAMES[target]
    commit = git_commit()
    tags = {
        "bidopt.target": target,
        "bidopt.data.source": str(fingerprint.get("source")),
        **(tags or {}),
    }
    if commit:
        tags["mlflow.source.git.commit"] = commit
    with mlflow.start_run(
        experiment_id=experiment_id, run_name=f"train-{target}", tags=tags
    ) as run:
        flat = {**params, **{f"data.{k}": v for k, v in fingerprint.items()}}
        flat |= {f"version.{k}": v for k, v in package_versions().items()}
        flat["git_commit"] = commit or "none"
        mlflow.log_params({k: ("" if v is None else v) for k, v in flat.items()})
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if np.isfinite(v)})
        mlflow.log_dict(dict(fingerprint), "data_fingerprint.json")
        mlflow.log_dict({"notes": list(notes)}, "notes.json")
        for path in files:
            mlflow.log_artifact(str(path), artifact_path="plots")
        mlflow.log_artifacts(str(bundle_dir), artifact_path=BUNDLE_ARTIFACT)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(Path(pyfunc_model.__file__).resolve()),
            artifacts={BUNDLE_ARTIFACT: str(bundle_dir)},
            signature=_signature(),
            input_example=_example_frame(input_example),
            pip_requirements=_pip_requirements(),
        )
        version = mlflow.register_model(
            info.model_uri, name, tags={"run_id": run.info.run_id, "target": target}
        )
    client = MlflowClient()
    client.set_registered_model_alias(name, CHALLENGER, version.version)
    return RegisteredVersion(
        name=name,
        version=str(version.version),
        run_id=run.info.run_id,
        model_uri=f"models:/{name}/{version.version}",
    )


def alias_version(target: Target, alias: str) -> RegisteredVersion | None:
    """The version an alias points at, or None when the model or alias does not exist."""
    name = MODEL_NAMES[target]
    try:
        mv = MlflowClient().get_model_version_by_alias(name, alias)
    except MlflowException:
        return None
    return RegisteredVersion(
        name=name,
        version=str(mv.version),
        run_id=str(mv.run_id or mv.tags.get("run_id", "")),
        model_uri=f"models:/{name}/{mv.version}",
    )


def set_alias(target: Target, alias: str, version: str) -> None:
    MlflowClient().set_registered_model_alias(MODEL_NAMES[target], alias, version)


def load_bundle(model_uri: str) -> ModelBundle:
    """Download a registered model (e.g. `models:/bidopt-ctr@champion`) and load its bundle;
    the download is deleted afterwards (ModelBundle.load reads every file into memory)."""
    with tempfile.TemporaryDirectory(prefix="bidopt-model-") as dst:
        try:
            local = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=dst)
        except MlflowException as e:
            raise TrackingError(f"{model_uri}: cannot download ({e.message})") from None
        return ModelBundle.load(find_bundle_dir(Path(local)))


def run_params(run_id: str) -> dict[str, str]:
    """The params of a training run: how promote re-creates the run's data."""
    try:
        return dict(MlflowClient().get_run(run_id).data.params)
    except MlflowException as e:
        raise TrackingError(f"run {run_id}: {e.message}") from None


def run_fingerprint(run_id: str) -> dict[str, Any]:
    params = run_params(run_id)
    return {k[len("data.") :]: v for k, v in params.items() if k.startswith("data.")}


def log_simulation(
    *,
    params: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
    table_csv: Path,
    plot_png: Path | None,
    experiment: str = EXPERIMENT,
    uri: str | None = None,
) -> str:
    """One parent run per simulation, a nested run per (strategy, budget fraction).

    Nested runs carry params `strategy` and `budget_fraction` and the replay metrics, so the
    MLflow UI can compare strategies side by side; the parent holds the table and the plot.
    """
    connect(uri)
    experiment_id = ensure_experiment(experiment)
    metric_names = (
        "clicks", "conversions", "wins", "spend", "win_rate", "ecpc", "ecpa", "ctr",
        "expected_clicks",
    )  # fmt: skip
    with mlflow.start_run(experiment_id=experiment_id, run_name="simulate") as parent:
        mlflow.log_params({k: ("" if v is None else v) for k, v in params.items()})
        mlflow.log_artifact(str(table_csv))
        if plot_png is not None:
            mlflow.log_artifact(str(plot_png))
        for row in rows:
            name = f"{row['strategy']}@{row['budget_fraction']:g}"
            with mlflow.start_run(experiment_id=experiment_id, run_name=name, nested=True):
                mlflow.log_params(
                    {"strategy": row["strategy"], "budget_fraction": row["budget_fraction"]}
                )
                values = {k: float(row[k]) for k in metric_names if row.get(k) is not None}
                mlflow.log_metrics({k: v for k, v in values.items() if np.isfinite(v)})
    return parent.info.run_id
