from __future__ import annotations

import typer
from typer.testing import CliRunner

from serving.cli import register


def app() -> typer.Typer:
    root = typer.Typer()
    register(root)

    @root.callback()
    def _root() -> None:
        """bidopt"""

    return root


def test_serve_help_names_the_settings() -> None:
    result = CliRunner().invoke(app(), ["serve", "--help"])
    assert result.exit_code == 0
    for option in ("--host", "--port", "--workers", "--tracking-uri", "--reload-interval"):
        assert option in result.output


def test_weak_api_key_stops_serve_with_one_line() -> None:
    result = CliRunner().invoke(app(), ["serve"], env={"BIDOPT_API_KEY": "changethis"})
    assert result.exit_code == 2
    assert "BIDOPT_API_KEY is a placeholder value" in result.output
    assert "Traceback" not in result.output


def test_listening_beyond_loopback_without_a_key_is_refused() -> None:
    result = CliRunner().invoke(app(), ["serve", "--host", "0.0.0.0"], env={"BIDOPT_API_KEY": ""})
    assert result.exit_code == 2
    assert "not a loopback address and no BIDOPT_API_KEY is set" in result.output
    assert "Traceback" not in result.output


def test_bad_flag_value_is_a_one_line_error() -> None:
    result = CliRunner().invoke(app(), ["serve", "--workers", "0"])
    assert result.exit_code == 2
    assert "workers" in result.output
