"""Where the MLflow store is: one rule for every bidopt command and the service.

BIDOPT_TRACKING_URI, else MLFLOW_TRACKING_URI (a tracking server, say), else a SQLite store at
`<cwd>/mlruns/mlflow.db` with its artifacts under `<cwd>/mlruns/` (MLflow's own defaults would
put `mlflow.db` and `mlartifacts/` in whatever directory you stand in, and its file store is
deprecated).

Why here, in features/: training writes the store and serving reads it, so the rule must be
written once where both can import it, and features/ is the only package both may import (data
flows features -> training -> serving). It is a rule about text, no MLflow import, so it sits
beside `bundle.py` (what travels) rather than inside it (where it travels is another concern).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Final

URI_VARIABLES: Final = ("BIDOPT_TRACKING_URI", "MLFLOW_TRACKING_URI")


def default_tracking_uri(cwd: Path | None = None, env: Mapping[str, str] | None = None) -> str:
    """The first of URI_VARIABLES set to a non-blank value in `env` (default: the process
    environment), else the SQLite store under `cwd` (default: the working directory)."""
    env = os.environ if env is None else env
    for var in URI_VARIABLES:
        value = env.get(var, "").strip()
        if value:
            return value
    return f"sqlite:///{(cwd or Path.cwd()).resolve() / 'mlruns' / 'mlflow.db'}"
