"""The service's only MLflow module: `models:/name@alias` -> version -> ModelBundle.

Serving never unpickles a pyfunc model: it resolves the alias to a version, downloads that
version's files and rebuilds the bundle from its text artifacts (`artifacts/bundle/` inside the
logged model, per the training <-> serving contract). Everything here is blocking I/O; the
reloader calls it from a worker thread so the event loop keeps answering bids meanwhile.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from bidding.winrate import WinRateModel
from features.bundle import BundleError, ModelBundle, find_bundle_dir

MAX_REASON_CHARS: Final = 400
WINRATE_FILE: Final = "winrate.json"  # optional, beside the 4 bundle files


class RegistryUnavailable(RuntimeError):
    """The registry cannot be asked right now (store missing or down, alias not set yet):
    retry later with back-off."""


class VersionRefused(RuntimeError):
    """This version cannot be served (download failed, bundle broken): keep the old one."""


@dataclass(frozen=True)
class ModelRef:
    """A resolved registry entry: which version an alias points at, and where it came from."""

    name: str
    alias: str
    version: str
    run_id: str | None


def short(exc: BaseException) -> str:
    """One line, bounded: MLflow's messages can carry whole stack traces or SQL statements."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if len(text) > MAX_REASON_CHARS:
        text = text[: MAX_REASON_CHARS - 3] + "..."
    return text


def backoff_delay(attempt: int, *, base: float = 0.5, cap: float = 30.0) -> float:
    """Seconds to wait before retry `attempt` (0-based): doubling from `base`, at most `cap`."""
    return min(cap, base * (2.0 ** min(attempt, 30)))


def read_winrate(path: Path) -> WinRateModel:
    """A WinRateModel.to_dict() JSON file; ValueError naming the problem when it is not one."""
    import json

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path.name}: cannot read: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path.name}: not a JSON object")
    return WinRateModel.from_dict(data)


class Registry:
    """MLflow registry reads for one tracking URI; holds no MLflow global state."""

    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri
        self._client: Any = None

    def _sqlite_path(self) -> Path | None:
        prefix = "sqlite:///"
        if self.tracking_uri.startswith(prefix):
            return Path(self.tracking_uri[len(prefix) :].split("?", 1)[0])
        return None

    def _get_client(self) -> Any:
        path = self._sqlite_path()
        if path is not None and not path.is_file():
            # MLflow would silently create an empty store here; a service pointed at the wrong
            # directory should say so instead.
            raise RegistryUnavailable(f"no MLflow store at {path} (set BIDOPT_TRACKING_URI)")
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(
                tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri
            )
        return self._client

    def resolve(self, name: str, alias: str) -> ModelRef:
        """The version `name@alias` points at now."""
        try:
            mv = self._get_client().get_model_version_by_alias(name, alias)
        except RegistryUnavailable:
            raise
        except Exception as e:
            raise RegistryUnavailable(f"cannot resolve models:/{name}@{alias}: {short(e)}") from e
        return ModelRef(name=name, alias=alias, version=str(mv.version), run_id=mv.run_id or None)

    def load(self, ref: ModelRef) -> ModelBundle:
        """Download and rebuild one version in this process, without a proof (bench, tests)."""
        with self.fetched(ref) as bundle_dir:
            return read_version(ref, bundle_dir)[0]

    @contextlib.contextmanager
    def fetched(self, ref: ModelRef) -> Iterator[Path]:
        """One version's bundle directory, downloaded to a temporary directory that is deleted
        afterwards (ModelBundle.load reads every file into memory)."""
        import mlflow.artifacts

        uri = f"models:/{ref.name}/{ref.version}"
        tmp = Path(tempfile.mkdtemp(prefix="bidopt-model-"))
        try:
            try:
                # The version's concrete artifact location, asked of our client: handing
                # `models:/...` to download_artifacts would resolve it against MLflow's global
                # registry URI instead of ours.
                source = self._get_client().get_model_version_download_uri(ref.name, ref.version)
                local = mlflow.artifacts.download_artifacts(
                    artifact_uri=source, dst_path=str(tmp), tracking_uri=self.tracking_uri
                )
            except Exception as e:
                raise VersionRefused(f"{uri}: download failed: {short(e)}") from e
            bundle_dir = find_bundle_dir(Path(local))
            if not bundle_dir.is_dir():
                raise VersionRefused(f"{uri}: no bundle directory in the logged model")
            yield bundle_dir
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def read_version(ref: ModelRef, bundle_dir: Path) -> tuple[ModelBundle, WinRateModel | None]:
    """Rebuild a (proven) bundle, plus the optional `winrate.json` beside the four bundle files
    (first-price shading)."""
    uri = f"models:/{ref.name}/{ref.version}"
    try:
        bundle = ModelBundle.load(bundle_dir)
    except BundleError as e:
        reason = short(e).replace(str(bundle_dir.parent.parent.parent), "<download>")
        raise VersionRefused(f"{uri}: {reason}") from e
    winrate_path = bundle_dir / WINRATE_FILE
    if not winrate_path.is_file():
        return bundle, None
    try:
        return bundle, read_winrate(winrate_path)
    except ValueError as e:
        raise VersionRefused(f"{uri}: {WINRATE_FILE}: {short(e)}") from e
