"""Fixtures for the serving tests: a registry holding trained models, and a live server.

`serving_store` is training's session fixture `trained_store` (the real `bidopt quickstart`).
`tiny_bundles` trains two small bundles without MLflow, for the in-process tests. `live` is one
server on that store, shared by a test module (helpers: tests/helpers/serving.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from features.bundle import ModelBundle
from serving.models.predictor import LoadedModel, Predictor
from serving.models.registry import ModelRef
from tests.helpers.serving import Server, run_server, train_tiny_bundles


@pytest.fixture(scope="session")
def tiny_bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return train_tiny_bundles(tmp_path_factory.mktemp("tiny-bundles"))


@pytest.fixture(scope="session")
def serving_store(trained_store: tuple[str, Path]) -> tuple[str, Path]:
    """(tracking_uri, workdir) of the store `bidopt quickstart` trained (tests/conftest.py)."""
    uri, workdir = trained_store
    return str(uri), Path(workdir)


@pytest.fixture(scope="module")
def live(
    serving_store: tuple[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """One server on the session store, shared by a test module (read-only use)."""
    uri, _ = serving_store
    with run_server(uri, tmp_path_factory.mktemp("live")) as server:
        yield server


@pytest.fixture(scope="session")
def predictor(tiny_bundles: dict[str, Path]) -> Predictor:
    """The tiny pair, loaded, for the in-process app tests (set as the holder's current)."""
    models = {
        k: LoadedModel.build(ModelRef(f"bidopt-{k}", "champion", "1", None), ModelBundle.load(v))
        for k, v in tiny_bundles.items()
    }
    return Predictor.build(models["ctr"], models["cvr"])
