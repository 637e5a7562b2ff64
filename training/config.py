"""Training settings: documented TOML defaults, an optional TOML file, then `--set` overrides.

Read once at the edge (the CLI) and passed down as a frozen `TrainConfig`; nothing here touches
disk on import. The merged tables are validated by typed pydantic models (`Settings`: one per
section, each value's type and range), so a typo or an impossible value fails here with the
key's name instead of deep inside LightGBM; defaults.toml stays the one place defaults live.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

Target = Literal["ctr", "cvr"]
TARGETS: tuple[Target, ...] = ("ctr", "cvr")
SECTIONS = ("split", "cvr", "spec", "calibration", "promote", "lightgbm", "dask")
# Sections with a per-target table (`[lightgbm_cvr]`, `[split_cvr]`, ...) merged over them.
PER_TARGET = ("split", "calibration", "lightgbm")
DelayMode = Literal["drop", "naive", "em"]
DELAY_MODES: tuple[DelayMode, ...] = ("drop", "naive", "em")


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Fraction = Annotated[float, Field(gt=0, lt=1)]
Positive = Annotated[float, Field(gt=0)]


class Split(_Section):
    train_frac: Fraction
    valid_frac: Fraction
    max_valid_rows: Annotated[int, Field(ge=0, description="0: every validation row")]
    max_test_rows: Annotated[int, Field(ge=0, description="0: every test row")]

    @model_validator(mode="after")
    def _leaves_a_test_window(self) -> Split:
        if self.train_frac + self.valid_frac >= 1:
            raise ValueError("split.train_frac + split.valid_frac must leave a test window (< 1)")
        return self


class Cvr(_Section):
    attribution_days: Positive
    delay: str
    delay_by: str
    delay_prior: Positive
    em_iterations: Annotated[int, Field(ge=1)]

    @model_validator(mode="after")
    def _known_delay(self) -> Cvr:
        if self.delay not in DELAY_MODES:
            raise ValueError(
                f"cvr.delay must be one of {', '.join(DELAY_MODES)}, not {self.delay!r}"
            )
        return self


class Spec(_Section):
    min_count: Annotated[int, Field(ge=1)]
    max_vocab: Annotated[int, Field(ge=1)]
    max_segments: Annotated[int, Field(ge=0)]
    lift_key: str
    lift_prior: Positive


class Calibration(_Section):
    methods: str

    @model_validator(mode="after")
    def _known_methods(self) -> Calibration:
        methods = [m.strip() for m in self.methods.split(",") if m.strip()]
        if not methods or any(m not in ("isotonic", "platt", "identity") for m in methods):
            raise ValueError(
                f"calibration.methods must list isotonic, platt or identity: {self.methods!r}"
            )
        return self


class Promote(_Section):
    max_ece_rel: Annotated[float, Field(ge=0)]


class LightGbm(_Section):
    learning_rate: Positive
    num_leaves: Annotated[int, Field(ge=2)]
    min_data_in_leaf: Annotated[int, Field(ge=0)]
    feature_fraction: Annotated[float, Field(gt=0, le=1)]
    bagging_fraction: Annotated[float, Field(gt=0, le=1)]
    bagging_freq: Annotated[int, Field(ge=0)]
    lambda_l2: Annotated[float, Field(ge=0)]
    min_data_per_group: Annotated[int, Field(ge=1)]
    cat_smooth: Annotated[float, Field(ge=0)]
    cat_l2: Annotated[float, Field(ge=0)]
    max_cat_to_onehot: Annotated[int, Field(ge=1)]
    max_cat_threshold: Annotated[int, Field(ge=1)]
    max_bin: Annotated[int, Field(ge=2)]
    num_boost_round: Annotated[int, Field(ge=1)]
    early_stopping_rounds: Annotated[int, Field(ge=0)]
    num_threads: Annotated[int, Field(ge=0)]
    seed: int


class Dask(_Section):
    time_out_minutes: Annotated[int, Field(ge=1)]
    fit_timeout_s: Positive
    pause_grace_s: Annotated[float, Field(ge=0)]
    lock_timeout_s: Annotated[float, Field(ge=0)]
    connect_timeout_s: Positive


class Settings(_Section):
    """Every section as resolved for one target."""

    split: Split
    cvr: Cvr
    spec: Spec
    calibration: Calibration
    promote: Promote
    lightgbm: LightGbm
    dask: Dask


def _validated(resolved: Mapping[str, Mapping[str, Any]], origin: str) -> Settings:
    """The typed settings, or one ConfigError naming the key (and where it came from)."""
    try:
        return Settings.model_validate(resolved)
    except ValidationError as e:
        err = e.errors(include_url=False)[0]
        loc = [str(p) for p in err["loc"]]
        key = ".".join(loc)
        kind = err["type"]
        if kind.endswith(("_parsing", "_type")) and len(loc) == 2:
            field = Settings.model_fields[loc[0]].annotation.model_fields[loc[1]]  # type: ignore[union-attr]
            base = getattr(field.annotation, "__name__", str(field.annotation))
            msg = f"{origin}: {loc[1]}={err['input']!r} is not a valid {base} ({key})"
        elif kind == "value_error":
            msg = str(err["ctx"]["error"])
        elif kind == "extra_forbidden":
            msg = f"{origin}: unknown key {key!r}"
        else:
            msg = f"{origin}: {key} {err['msg'].lower()} (got {err['input']!r})"
        raise ConfigError(msg) from None


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
    def max_test_rows(self) -> int:
        return int(self.sections["split"]["max_test_rows"])

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
                base[section][key] = value
        for t in TARGETS:  # every table of the file, whichever model it is for
            _validated(_resolve(base, t), f"config {path}")
    resolved = _resolve(base, target)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value")
        key, value = (s.strip() for s in item.split("=", 1))
        section, name = _find(resolved, key, "--set", target)
        resolved[section][name] = value
    settings = _validated(resolved, "--set" if overrides else "defaults")
    return TrainConfig(target=target, sections=settings.model_dump())
