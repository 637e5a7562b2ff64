"""Running the real `bidopt` CLI in a subprocess against a store of the test's own."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def bidopt_command() -> list[str]:
    """The installed `bidopt` script of this interpreter's environment, else `python -m`."""
    script = Path(sys.executable).parent / "bidopt"
    return [str(script)] if script.exists() else [sys.executable, "-m", "bidopt_cli"]


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for a CLI subprocess: no inherited tracking URI, venv bin on PATH."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("BIDOPT_TRACKING_URI", "MLFLOW_TRACKING_URI")
    }
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONWARNINGS"] = "ignore"
    env.update(extra)
    return env


def sqlite_uri(db: Path) -> str:
    return f"sqlite:///{db.resolve()}"
