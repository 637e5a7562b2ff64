"""ModelBundle: the training ↔ serving contract, with no MLflow in it.

A bundle is three text files in one directory — LightGBM model text, feature spec JSON,
calibrator JSON — plus a small meta JSON. Training writes it and logs the directory as the
artifact `BUNDLE_ARTIFACT` of an MLflow pyfunc model; serving downloads the model, finds the
directory with `find_bundle_dir` and rebuilds the callable with `load`. No pickle. Both sides
take the artifact's name and its place in a download from here, so they cannot drift apart.

Loading a bundle and scoring an encoded matrix need no polars (serving never loads it);
only `predict_frame`, which encodes log rows, imports the batch encoder.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import lightgbm as lgb
import numpy as np
import yaml

from features.calibrator import Calibrator
from features.spec import FeatureSpec

if TYPE_CHECKING:
    import polars as pl

    from features.forest import Forest

# The name under which training logs the bundle directory as a pyfunc artifact; MLflow puts it
# at artifacts/<name>/ in a downloaded model (what `find_bundle_dir` falls back to).
BUNDLE_ARTIFACT: Final = "bundle"
BUNDLE_SUBDIR: Final = Path("artifacts") / BUNDLE_ARTIFACT

MODEL_FILE: Final = "model.txt"
SPEC_FILE: Final = "feature_spec.json"
CALIBRATOR_FILE: Final = "calibrator.json"
META_FILE: Final = "meta.json"
BUNDLE_FILES: Final = (MODEL_FILE, SPEC_FILE, CALIBRATOR_FILE, META_FILE)
# Below this many (row, tree) visits LightGBM's own predictor is done before numba has loaded
# the compiled forest (~0.5 s once per process); above it the forest saves ~40% (forest_speed).
FOREST_MIN_VISITS: Final = 30_000_000


class BundleError(ValueError):
    """A bundle directory that cannot be loaded; the message names the file and the reason."""


@dataclass(frozen=True)
class ModelBundle:
    booster: lgb.Booster
    spec: FeatureSpec
    calibrator: Calibrator
    meta: dict[str, Any] = field(default_factory=dict)

    @functools.cached_property
    def forest(self) -> Forest:
        """The booster as flat arrays for batch scoring (built on first use, then kept)."""
        from features.forest import Forest  # numba's import costs a second: only when scoring

        return Forest.from_booster(self.booster)

    def predict_raw_matrix(self, x: np.ndarray, threads: int = 1) -> np.ndarray:
        """What `Booster.predict` gives (the uncalibrated probability): through the compiled
        forest once it is loaded (the service loads it at start), or when the work repays
        loading it; the raw scores are bit-identical either way."""
        if "forest" not in self.__dict__ and x.shape[0] * self.booster.num_trees() < (
            FOREST_MIN_VISITS
        ):
            return self.booster.predict(x, num_threads=threads)  # type: ignore[return-value]
        return self.forest.predict(x, threads)

    def predict_matrix(self, x: np.ndarray, threads: int = 1) -> np.ndarray:
        """Calibrated probabilities for an encoded matrix."""
        return self.calibrator.transform(self.predict_raw_matrix(x, threads))

    def predict_frame(self, df: pl.DataFrame, threads: int = 1) -> np.ndarray:
        """Calibrated probabilities for canonical log rows (training, replay, the pyfunc)."""
        # imported here, not at the top: the batch encoder is polars, which serving never loads
        from features.batch import encode_matrix

        return self.predict_matrix(encode_matrix(df, self.spec), threads)

    def save(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / MODEL_FILE).write_text(self.booster.model_to_string())
        (directory / SPEC_FILE).write_text(self.spec.to_json())
        (directory / CALIBRATOR_FILE).write_text(self.calibrator.to_json())
        (directory / META_FILE).write_text(json.dumps(self.meta, indent=1, default=str))
        return directory

    @classmethod
    def load(cls, directory: Path) -> ModelBundle:
        directory = Path(directory)
        texts: dict[str, str] = {}
        for name in BUNDLE_FILES:
            path = directory / name
            try:
                texts[name] = path.read_text(encoding="utf-8")
            except OSError as e:
                raise BundleError(f"{path}: cannot read ({e.strerror or e})") from None
            except UnicodeDecodeError as e:
                raise BundleError(f"{path}: not UTF-8 text (byte {e.start})") from None
        try:
            booster = lgb.Booster(model_str=texts[MODEL_FILE])
        except lgb.basic.LightGBMError as e:
            raise BundleError(f"{directory / MODEL_FILE}: not a LightGBM model ({e})") from None
        parsers = {
            SPEC_FILE: FeatureSpec.from_json,
            CALIBRATOR_FILE: Calibrator.from_json,
            META_FILE: json.loads,
        }
        parsed: dict[str, Any] = {}
        for name, parse in parsers.items():
            try:
                parsed[name] = parse(texts[name])
            except (ValueError, KeyError, TypeError) as e:
                raise BundleError(f"{directory / name}: invalid JSON contract ({e})") from None
        spec, calibrator, meta = parsed[SPEC_FILE], parsed[CALIBRATOR_FILE], parsed[META_FILE]
        if booster.num_feature() != len(spec.features):
            raise BundleError(
                f"{directory}: model has {booster.num_feature()} features, "
                f"spec has {len(spec.features)}"
            )
        return cls(booster=booster, spec=spec, calibrator=calibrator, meta=meta)


def find_bundle_dir(model_dir: Path) -> Path:
    """Where the bundle artifact landed inside a downloaded pyfunc model.

    MLflow copies an artifact directory under its own base name (`artifacts/<dirname>`), which is
    `artifacts/bundle` only when training's directory is called `bundle`; the MLmodel file
    records the real path, so read it there and fall back to the contract's path.
    """
    model_dir = Path(model_dir)
    try:
        mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text())
        path = mlmodel["flavors"]["python_function"]["artifacts"][BUNDLE_ARTIFACT]["path"]
    except (OSError, KeyError, TypeError, yaml.YAMLError):
        return model_dir / BUNDLE_SUBDIR
    resolved = (model_dir / str(path)).resolve()
    if not resolved.is_relative_to(model_dir.resolve()):
        return model_dir / BUNDLE_SUBDIR  # a path escaping the download is not ours to read
    return resolved
