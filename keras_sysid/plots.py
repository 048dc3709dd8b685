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


def plot_test_scores(corr_single: np.ndarray, corr_avg: np.ndarray, oracle: np.ndarray, path: str,
                     title: str = "") -> None:
    """Per-neuron test scores: their distributions, and the repeat-averaged correlation against the oracle.

    Args:
        corr_single, corr_avg, oracle: ``(N,)`` single-trial and
            repeat-averaged correlation and the oracle correlation
            (:class:`~keras_sysid.evaluation.RepeatScores`).
        path: Output image file.
        title: Figure title.
    """
    plt = _pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    bins = np.linspace(min(-0.2, float(np.min(corr_single))), 1.0, 41)
    for values, label in ((corr_single, "single trial"), (corr_avg, "repeat-averaged")):
        left.hist(values, bins=bins, alpha=0.6, label=f"{label} (mean {np.mean(values):.3f})")
    left.set_xlabel("correlation with the responses")
    left.set_ylabel("neurons")
    left.legend(fontsize=7)
    right.plot([-1, 1], [-1, 1], color="0.5", lw=0.8)
    right.scatter(oracle, corr_avg, s=3, alpha=0.4, lw=0)
    right.set_xlim(min(0.0, float(np.min(oracle))), 1.0)
    right.set_ylim(min(0.0, float(np.min(corr_avg))), 1.0)
    right.set_xlabel("oracle correlation (leave-one-repeat-out)")
    right.set_ylabel("model, repeat-averaged")
    right.set_aspect("equal")
    figure.suptitle(title, fontsize=10)
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


def plot_mei_grid(images: np.ndarray, labels, path: str, background: float = 0.0, columns: int = 8) -> None:
    """MEIs (or any images) in a grid, each on a symmetric grey scale around ``background``.

    Args:
        images: ``(n, H, W, 1)`` or ``(n, H, W)``.
        labels: One title per image (e.g. neuron and activation).
        path: Output image file.
        background: The grey the images deviate from.
        columns: Images per row.
    """
    plt = _pyplot()
    images = np.asarray(images)[..., 0] if np.asarray(images).ndim == 4 else np.asarray(images)
    rows = -(-len(images) // columns)
    height, width = images.shape[1:3]
    scale = 1.6 / max(height, width) * 1.0
    figure, axes = plt.subplots(rows, columns, figsize=(columns * width * scale + 0.2, rows * (height * scale + 0.35)),
                                squeeze=False)
    for axis in axes.ravel():
        axis.axis("off")
    for axis, image, label in zip(axes.ravel(), images, labels):
        limit = float(np.max(np.abs(image - background))) or 1.0
        axis.imshow(image, cmap="gray", vmin=background - limit, vmax=background + limit)
        axis.set_title(str(label), fontsize=6)
    figure.tight_layout()
    figure.savefig(path, dpi=150)
    plt.close(figure)


def plot_rf_centres(centres: np.ndarray, image_shape, path: str, reference: np.ndarray | None = None,
                    reference_label: str = "readout position", title: str = "",
                    label: str = "gradient RF centre") -> None:
    """Gradient-RF centres on the visual field (image pixels), optionally joined to a reference position each.

    Args:
        centres: ``(n, 2)`` (row, column).
        image_shape: ``(H, W, ...)`` of the images.
        path: Output image file.
        reference: ``(n, 2)`` other positions of the same neurons (e.g. the readout's).
        reference_label: Legend label of ``reference``.
        title: Figure title.
        label: Legend label of ``centres``.
    """
    plt = _pyplot()
    height, width = image_shape[:2]
    figure, axis = plt.subplots(figsize=(6, 6 * height / width + 0.6))
    if reference is not None:
        if len(centres) <= 200:  # beyond that the joining lines hide the points
            for (r0, c0), (r1, c1) in zip(centres, reference):
                axis.plot([c0, c1], [r0, r1], color="0.7", lw=0.5)
        axis.scatter(reference[:, 1], reference[:, 0], s=6, color="tab:orange", label=reference_label, lw=0)
    axis.scatter(centres[:, 1], centres[:, 0], s=6, color="tab:blue", label=label, lw=0)
    axis.set_xlim(-0.5, width - 0.5)
    axis.set_ylim(height - 0.5, -0.5)
    axis.set_aspect("equal")
    axis.set_xlabel("column (px)")
    axis.set_ylabel("row (px)")
    axis.legend(fontsize=7, loc="upper right")
    axis.set_title(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=130)
    plt.close(figure)


def plot_tuning(orientations: np.ndarray, curves: np.ndarray, preferred: np.ndarray, osi: np.ndarray, labels,
                path: str, examples: int = 8) -> None:
    """Orientation tuning: example curves, and the distributions of preferred orientation and OSI.

    Args:
        orientations: ``(K,)`` radians.
        curves: ``(n, K)`` responses (phase-averaged, at each neuron's preferred frequency).
        preferred: ``(n,)`` preferred orientation, radians.
        osi: ``(n,)`` orientation selectivity index.
        labels: One label per neuron.
        path: Output image file.
        examples: How many curves to draw (the most selective first).
    """
    plt = _pyplot()
    figure, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    degrees = np.degrees(orientations)
    for index in np.argsort(-osi)[:examples]:
        curve = curves[index]
        axes[0].plot(degrees, curve / max(float(curve.max()), 1e-12), marker=".", lw=1,
                     label=f"{labels[index]} (OSI {osi[index]:.2f})")
    axes[0].set_xlabel("grating orientation (deg)")
    axes[0].set_ylabel("response / max")
    axes[0].legend(fontsize=6)
    axes[1].hist(np.degrees(preferred), bins=np.linspace(0, 180, 13), color="tab:blue")
    axes[1].set_xlabel("preferred orientation (deg; 0 = vertical bars)")
    axes[1].set_ylabel("neurons")
    axes[2].hist(osi, bins=np.linspace(0, 1, 21), color="tab:green")
    axes[2].set_xlabel(f"OSI (median {np.median(osi):.2f})")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
