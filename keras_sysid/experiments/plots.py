"""Figures of the comparisons (needs the ``plots`` extra: matplotlib)."""

from __future__ import annotations

import numpy as np


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("Figures need matplotlib: pip install 'keras_sysid[plots]'.") from None
    return plt


def plot_correlation_pairs(per_neuron: dict, reference: str, path: str, score: str = "corr_single") -> None:
    """Per-neuron scores of ``reference`` against each other model, one panel each.

    Args:
        per_neuron: model name -> ``(N,)`` scores.
        reference: The model on the y axis of every panel.
        path: Output image file.
        score: Axis label.
    """
    plt = _pyplot()
    others = [name for name in per_neuron if name != reference]
    if reference not in per_neuron or not others:
        raise ValueError(f"plot_correlation_pairs needs {reference!r} and at least one other model; got {sorted(per_neuron)}.")
    figure, axes = plt.subplots(1, len(others), figsize=(3.2 * len(others), 3.4), squeeze=False)
    y = per_neuron[reference]
    for axis, name in zip(axes[0], others):
        x = per_neuron[name]
        low, high = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
        axis.plot([low, high], [low, high], color="0.5", lw=0.8)
        axis.scatter(x, y, s=2, alpha=0.3, lw=0)
        axis.set_xlabel(f"{name} ({np.mean(x):.3f})")
        axis.set_title(f"{reference} better: {np.mean(y > x):.0%}", fontsize=9)
        axis.set_aspect("equal")
    axes[0, 0].set_ylabel(f"{reference} ({np.mean(y):.3f})")
    figure.suptitle(f"Per-neuron {score} on the test tier", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_retinotopy(rf_positions: np.ndarray, cortical_positions: np.ndarray, path: str, title: str = "") -> None:
    """Learned RF positions coloured by cortical position, one panel per cortical axis.

    Args:
        rf_positions: ``(N, 2)`` (row, column) in image pixels.
        cortical_positions: ``(N, >=2)`` cortical coordinates (first two used).
        path: Output image file.
        title: Figure title.
    """
    plt = _pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for index, axis in enumerate(axes):
        points = axis.scatter(
            rf_positions[:, 1], rf_positions[:, 0], c=cortical_positions[:, index], s=3, cmap="viridis", lw=0
        )
        axis.invert_yaxis()
        axis.set_xlabel("RF column (px)")
        axis.set_ylabel("RF row (px)")
        axis.set_aspect("equal")
        figure.colorbar(points, ax=axis, label=f"cortical {'xy'[index]} (um)")
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_fev_by_types(table: list[dict], path: str) -> None:
    """FEV against the number of cell types, one line per readout (Fig. 5e)."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(4, 3.2))
    for readout in dict.fromkeys(row["readout"] for row in table):
        rows = sorted((row for row in table if row["readout"] == readout), key=lambda row: row["n_types"])
        axis.plot([row["n_types"] for row in rows], [row["fev"] for row in rows], "o-", label=readout)
    axis.set_xscale("log", base=2)
    axis.set_xlabel("cell types")
    axis.set_ylabel("FEV (test)")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
