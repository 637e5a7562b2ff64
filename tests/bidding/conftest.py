"""Fixtures of the bidding tests."""

from __future__ import annotations

import pytest
import typer

import bidding.cli


@pytest.fixture
def app() -> typer.Typer:
    """A bare app with only bidding's command groups (`campaigns`, `fx`), as bidopt_cli joins
    them."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    bidding.cli.register(app)

    @app.callback()
    def main() -> None:
        """bidopt"""

    return app
