from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from tests.bidding.test_rlb_campaign import RLB

EXAMPLE = Path(__file__).resolve().parents[2] / "campaigns.example.toml"


def test_valid_file_prints_a_table(app: typer.Typer) -> None:
    result = CliRunner().invoke(app, ["campaigns", "check", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "4 campaign(s), valid" in out
    for header in ("id", "goal", "target", "budget", "strategy", "creatives", "rules"):
        assert header in out
    for cid in ("cmp-001", "cmp-002", "cmp-003", "cmp-004"):
        assert cid in out
    assert "lagrangian (lam=0.2)" in out and "500/day, 12000 total" in out


def test_invalid_file_lists_every_error_one_per_line(app: typer.Typer, tmp_path: Path) -> None:
    bad = EXAMPLE.read_text(encoding="utf-8")
    bad = bad.replace('"192.0.2.0/24"', '"192.0.2.7/32"').replace("target = 25.0", "target = -1")
    f = tmp_path / "campaigns.toml"
    f.write_text(bad, encoding="utf-8")
    result = CliRunner().invoke(app, ["campaigns", "check", str(f)])
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"{f}: campaign 'cmp-001': targeting.ip_block[0]: 192.0.2.7/32 is narrower than /24: "
        "IPs are anonymised to /24, so it could never match",
        f"{f}: campaign 'cmp-004': target: must be > 0",
    ]
    assert "Traceback" not in result.output and "┏" not in result.output


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"[[campaigns]\n", "invalid TOML"),
        (b"\xff\xfe\x00", "cannot read"),
    ],
)
def test_unreadable_or_malformed_file(
    app: typer.Typer, tmp_path: Path, content: bytes, message: str
) -> None:
    f = tmp_path / "c.toml"
    f.write_bytes(content)
    result = CliRunner().invoke(app, ["campaigns", "check", str(f)])
    assert result.exit_code == 1
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_missing_file(app: typer.Typer, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["campaigns", "check", str(tmp_path / "nope.toml")])
    assert result.exit_code == 1
    assert (
        result.stderr.strip() == f"{tmp_path / 'nope.toml'}: cannot read: No such file or directory"
    )


def test_rlb_campaign_shows_its_settings(app: typer.Typer, tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text(RLB)
    result = CliRunner().invoke(app, ["campaigns", "check", str(tmp_path / "c.toml")])
    assert result.exit_code == 0, result.output
    assert "rlb (m.json, 2,000 auctions/day)" in result.output
