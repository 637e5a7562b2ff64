"""Training settings: documented TOML defaults, an optional TOML file, then `--set` overrides.

Read once at the edge (the CLI) and passed down as a frozen `TrainConfig`; nothing here touches
disk on import. Every value is cast to the type of its default, so a typo fails here with the
key's name instead of deep inside LightGBM.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

Target = Literal["ctr", "cvr"]
TARGETS: tuple[Target, ...] = ("ctr", "cvr")
SECTIONS = ("split", "cvr", "spec", "calibration", "promote", "lightgbm")
# Sections with a per-target table (`[lightgbm_cvr]`, `[split_cvr]`, ...) merged over them.
PER_TARGET = ("split", "calibration", "lightgbm")
DelayMode = Literal["drop", "naive", "em"]
DELAY_MODES: tuple[DelayMode, ...] = ("drop", "naive", "em")


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names the key."""


@dataclass(frozen=True)
class TrainConfig:
    target: Target
    sections: Mapping[str, Mapping[str, Any]]

    def section(self, name: str) -> dict[str, Any]:
        return dict(self.sections[name])

    @property
    def lightgbm(self) -> dict[str, Any]:
        return self.section("lightgbm")

    @property
    def train_frac(self) -> float:
        return float(self.sections["split"]["train_frac"])

    @property
    def valid_frac(self) -> float:
        return float(self.sections["split"]["valid_frac"])

    @property
    def max_valid_rows(self) -> int:
        return int(self.sections["split"]["max_valid_rows"])

    @property
    def attribution_days(self) -> float:
        return float(self.sections["cvr"]["attribution_days"])

    @property
    def delay(self) -> DelayMode:
        return self.sections["cvr"]["delay"]  # type: ignore[no-any-return]

    @property
    def em_iterations(self) -> int:
        return int(self.sections["cvr"]["em_iterations"])

    @property
    def calibration_methods(self) -> list[str]:
        raw = str(self.sections["calibration"]["methods"])
        return [m.strip() for m in raw.split(",") if m.strip()]

    @property
    def max_ece_rel(self) -> float:
        return float(self.sections["promote"]["max_ece_rel"])

    def flat(self) -> dict[str, Any]:
        """`section.key -> value`, the form logged as MLflow params."""
        return {f"{s}.{k}": v for s, kv in self.sections.items() for k, v in kv.items()}


def _defaults() -> dict[str, dict[str, Any]]:
    text = resources.files("training").joinpath("defaults.toml").read_text()
    return tomllib.loads(text)


def _cast(key: str, raw: object, default: object, origin: str) -> Any:
    """Cast `raw` to the type of `default`; bool before int since bool is an int subclass."""
    kind = type(default)
    try:
        if kind is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("true", "1", "yes", "on"):
                return True
            if text in ("false", "0", "no", "off"):
                return False
            raise ValueError
        if kind is int:
            if isinstance(raw, float) and not raw.is_integer():
                raise ValueError
            if isinstance(raw, str) and not raw.strip().lstrip("+-").isdigit():
                raise ValueError
            return int(raw)  # type: ignore[call-overload]
        if kind is float:
            if isinstance(raw, bool):
                raise ValueError
            return float(raw)  # type: ignore[arg-type]
        return str(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{origin}: {key}={raw!r} is not a valid {kind.__name__}") from None


def _base_section(section: str) -> str | None:
    """`lightgbm_cvr` -> `lightgbm`: the section a per-target table overrides (else None)."""
    for base in PER_TARGET:
        if section.startswith(f"{base}_"):
            return base
    return None


def _resolve(sections: dict[str, dict[str, Any]], target: Target) -> dict[str, dict[str, Any]]:
    out = {name: dict(sections[name]) for name in SECTIONS}
    for base in PER_TARGET:
        out[base].update(sections.get(f"{base}_{target}", {}))
    return out


def _find(
    resolved: Mapping[str, Mapping[str, Any]], key: str, origin: str, target: Target
) -> tuple[str, str]:
    if "." in key:
        section, name = key.split(".", 1)
        base = _base_section(section)
        if base is not None and section != f"{base}_{target}":
            raise ConfigError(f"{origin}: {key!r} is not a setting of the {target} model")
        section = base or section
        if section in resolved and name in resolved[section]:
            return section, name
        raise ConfigError(f"{origin}: unknown key {key!r}")
    for section in ("lightgbm", *SECTIONS):
        if key in resolved[section]:
            return section, key
    known = sorted({k for kv in resolved.values() for k in kv})
    raise ConfigError(f"{origin}: unknown key {key!r} (known: {', '.join(known)})")


def load_config(
    target: Target,
    path: Path | None = None,
    overrides: Iterable[str] = (),
) -> TrainConfig:
    """Defaults <- `path` (TOML, same layout, any subset) <- `key=value` overrides."""
    if target not in TARGETS:
        raise ConfigError(f"target must be one of {TARGETS}, not {target!r}")
    base = _defaults()
    if path is not None:
        try:
            user = tomllib.loads(Path(path).read_text())
        except OSError as e:
            raise ConfigError(f"config {path}: cannot read ({e.strerror or e})") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config {path}: invalid TOML ({e})") from None
        for section, values in user.items():
            if section not in base or not isinstance(values, dict):
                raise ConfigError(f"config {path}: unknown section [{section}]")
            over = _base_section(section)
            defaults = {**base[over], **base[section]} if over else base[section]
            for key, value in values.items():
                if key not in defaults:
                    raise ConfigError(f"config {path}: unknown key {section}.{key}")
                base[section][key] = _cast(f"{section}.{key}", value, defaults[key], str(path))
    resolved = _resolve(base, target)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value")
        key, value = (s.strip() for s in item.split("=", 1))
        section, name = _find(resolved, key, "--set", target)
        resolved[section][name] = _cast(name, value, resolved[section][name], "--set")
    _check(resolved)
    return TrainConfig(target=target, sections=resolved)


def _check(cfg: Mapping[str, Mapping[str, Any]]) -> None:
    split = cfg["split"]
    if not (0 < split["train_frac"] < 1 and 0 < split["valid_frac"] < 1):
        raise ConfigError("split.train_frac and split.valid_frac must be in (0, 1)")
    if split["train_frac"] + split["valid_frac"] >= 1:
        raise ConfigError("split.train_frac + split.valid_frac must leave a test window (< 1)")
    if split["max_valid_rows"] < 0:
        raise ConfigError("split.max_valid_rows must be 0 (all rows) or positive")
    cvr = cfg["cvr"]
    if cvr["attribution_days"] <= 0:
        raise ConfigError("cvr.attribution_days must be positive")
    if cvr["delay"] not in DELAY_MODES:
        raise ConfigError(
            f"cvr.delay must be one of {', '.join(DELAY_MODES)}, not {cvr['delay']!r}"
        )
    if cvr["em_iterations"] < 1:
        raise ConfigError("cvr.em_iterations must be at least 1")
    if cvr["delay_prior"] <= 0:
        raise ConfigError("cvr.delay_prior must be positive")
    lgbm = cfg["lightgbm"]
    if lgbm["num_boost_round"] < 1:
        raise ConfigError("lightgbm.num_boost_round must be at least 1")
    if lgbm["learning_rate"] <= 0:
        raise ConfigError("lightgbm.learning_rate must be positive")
    methods = [m.strip() for m in str(cfg["calibration"]["methods"]).split(",") if m.strip()]
    bad = [m for m in methods if m not in ("isotonic", "platt", "identity")]
    if not methods or bad:
        raise ConfigError(
            f"calibration.methods must list isotonic, platt or identity: {cfg['calibration']}"
        )
