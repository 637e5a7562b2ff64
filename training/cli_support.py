"""What every training sub-command shares: one-line errors and quiet MLflow logging.

Its own module so that `cli.py` (train, promote, quickstart) and `simulate_cli.py` both import
it at the top, instead of one reaching into the other from inside a function.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import NoReturn

import typer
from rich.console import Console

errors = Console(stderr=True)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn bad input into one line and exit code 2, never a traceback.

    Every domain error of bidopt (config, split, promote, bundle, registry look-ups) is a
    ValueError; LogError names an unusable log file; MlflowException covers an unreachable or
    refusing tracking store. Importing nothing heavy here keeps failing fast cheap.
    """
    from features.ingest import LogError

    try:
        yield
    except (ValueError, OSError, LogError) as e:
        fail(e)
    except Exception as e:
        if type(e).__name__ != "MlflowException":
            raise
        fail(e)


def fail(e: BaseException) -> NoReturn:
    text = " ".join(str(e).split()) or type(e).__name__
    errors.print(f"[red]error:[/red] {text}", highlight=False, soft_wrap=True)
    raise typer.Exit(2) from None


def quiet_mlflow() -> None:
    """MLflow's INFO lines (store migrations, registrations) would break up the progress bar."""
    import logging

    import mlflow  # noqa: F401 - mlflow configures its loggers on import; adjust after that

    logging.getLogger("mlflow").setLevel(logging.WARNING)
