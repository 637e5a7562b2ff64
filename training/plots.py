"""PNG plots logged with each run: the calibration curve and the feature importance.

matplotlib runs on the Agg backend (no display, no GUI toolkit); it is imported inside the
functions so that importing training code stays cheap.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from training.delay import DelayModel
from training.evaluate import ECE_BINS


def _pyplot():  # noqa: ANN202 - returns the pyplot module
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def calibration_curve(
    y: np.ndarray, p: np.ndarray, path: Path, title: str, bins: int = ECE_BINS
) -> Path:
    """Mean prediction against observed rate in the same equal-mass bins as `ece`."""
    plt = _pyplot()
    ya, pa = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    order = np.argsort(pa, kind="mergesort")
    groups = np.array_split(order, min(bins, max(ya.size, 1)))
    mean_p = np.array([pa[g].mean() for g in groups if g.size])
    mean_y = np.array([ya[g].mean() for g in groups if g.size])
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    top = float(max(mean_p.max(initial=0), mean_y.max(initial=0))) * 1.05 or 1.0
    ax.plot([0, top], [0, top], color="grey", linestyle="--", linewidth=1, label="perfect")
    ax.plot(mean_p, mean_y, marker="o", linewidth=1.5, label="model")
    ax.set_xlabel("mean predicted probability (equal-mass bins)")
    ax.set_ylabel("observed rate")
    ax.set_title(title)
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def feature_importance(gains: Mapping[str, float], path: Path, title: str, top: int = 25) -> Path:
    """Total split gain of the `top` most used features, largest first."""
    plt = _pyplot()
    items = sorted(gains.items(), key=lambda kv: kv[1], reverse=True)[:top][::-1]
    fig, ax = plt.subplots(figsize=(6, 0.3 * max(len(items), 4) + 1), dpi=100)
    ax.barh([k for k, _ in items], [v for _, v in items])
    ax.set_xlabel("total gain")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def delay_fit(delay: DelayModel, observed_s: np.ndarray, path: Path, window_days: float) -> Path:
    """The fitted delay distribution F over the matured conversions' observed delays (their
    empirical distribution), log time axis, with the hour and the day marked."""
    plt = _pyplot()
    hours = np.sort(np.asarray(observed_s, dtype=np.float64)) / 3600.0
    fig, ax = plt.subplots(figsize=(6.5, 4.5), dpi=100)
    if hours.size:
        ecdf = np.arange(1, hours.size + 1) / hours.size
        ax.step(np.maximum(hours, 1e-3), ecdf, where="post", label=f"observed ({hours.size})")
    grid = np.geomspace(1.0, delay.window_s, 400)
    ax.plot(grid / 3600.0, delay(grid), linewidth=2, label="fitted F")
    for at, name in ((1.0, "1 h"), (24.0, "1 day")):
        ax.axvline(at, color="grey", linestyle=":", linewidth=1)
        ax.text(at, 0.02, f" {name}: {delay.share_within(at * 3600.0):.2f}", fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("hours from click to conversion")
    ax.set_ylabel(f"share of conversions inside {window_days:g} days")
    ax.set_title("pCVR delay distribution: fitted against observed (matured clicks)")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
