"""Are the in-silico experiments right? Fitted models against their known truth, and mouse V1.

``tools/reproduce.py --experiment insilico_truth`` compares, for 100 neurons
of the synthetic zoo populations, the MEIs of the fitted zoo model with the
MEIs of the true simulator (pixel correlation per neuron), and the fitted
model's gradient-RF centres (envelopes of local gradients at 200 white-noise
images) with the cells' true locations.
``--experiment insilico_mouse_v1`` runs the digital-twin report on the mouse
V1 zoo model: MEIs of the 16 neurons it predicts best on the validation tier
against the best of all the scan's images at the same contrast, gradient-RF
centres against the readout's positions for every neuron, and orientation
tuning of every neuron.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

from keras_sysid import insilico, metrics, zoo
from keras_sysid.data import load as load_recording
from keras_sysid.experiments.presets import zoo_synthetic_config

# MEI settings of the truth comparison: no blur or jitter (they change which
# image is reached), a budget of the training images' RMS contrast (the default).
TRUTH_MEI = {"steps": 1000, "blur_sigma": 0.0, "jitter": 0}


def _pixel_correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-image Pearson correlation of ``(n, ...)`` images."""
    a = a.reshape(len(a), -1) - a.reshape(len(a), -1).mean(axis=1, keepdims=True)
    b = b.reshape(len(b), -1) - b.reshape(len(b), -1).mean(axis=1, keepdims=True)
    return np.sum(a * b, axis=1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-300)


def against_truth(ground_truth: str, n_neurons: int = 100, out: str | None = None, verbose: int = 1,
                  n_local_images: int = 200) -> dict:
    """MEIs and gradient-RF centres of ``synthetic_<truth>_factorized`` against ``synthetic_<truth>_groundtruth``.

    Args:
        ground_truth: ``"dog"`` or ``"cnn"``.
        n_neurons: The first this many neurons.
        out: Folder for ``meis_fitted.npy``, ``meis_truth.npy``, a figure and ``summary.json``.
        verbose: Progress lines.
        n_local_images: White-noise test images of the population at which local
            gradients give the RF envelope (also reported: at the mean image).

    Returns:
        Summary: median and fraction >= 0.9 of the MEI correlation, median RF
        centre error and fraction within 1 px, activations, seconds.
    """
    fitted = zoo.load(f"synthetic_{ground_truth}_factorized")
    truth = zoo.load(f"synthetic_{ground_truth}_groundtruth")
    locations = np.asarray(zoo.metadata(f"synthetic_{ground_truth}_groundtruth")["locations"], dtype="float64")
    neurons = np.arange(n_neurons)
    started = time.perf_counter()
    meis_fitted = insilico.most_exciting_inputs(fitted, neurons, verbose=verbose, **TRUTH_MEI)
    seconds_fitted = time.perf_counter() - started
    meis_truth = insilico.most_exciting_inputs(truth, neurons, verbose=verbose, **TRUTH_MEI)
    correlation = _pixel_correlation(meis_fitted.images, meis_truth.images)
    # The truth's response to the fitted model's MEI: how close to the best the truth can do.
    truth_on_fitted = truth.predict(meis_fitted.images, verbose=0)[np.arange(n_neurons), neurons]
    truth_ratio = truth_on_fitted / meis_truth.activations
    # Local gradients at white-noise images (the data the models saw): at the mean
    # (zero) image a rectifying truth has no gradient to find a centre from.
    images = zoo_synthetic_config(ground_truth).population().test.images[:n_local_images]
    rfs = insilico.gradient_receptive_fields(fitted, neurons, images=images)
    truth_rfs = insilico.gradient_receptive_fields(truth, neurons, images=images)
    at_mean = insilico.gradient_receptive_fields(fitted, neurons)
    error = metrics.rf_distance(rfs.center, locations[neurons])
    truth_error = metrics.rf_distance(truth_rfs.center, locations[neurons])
    mean_error = metrics.rf_distance(at_mean.center, locations[neurons])
    to_truth_rf = metrics.rf_distance(rfs.center, truth_rfs.center)
    summary = {
        "ground_truth": ground_truth, "n_neurons": n_neurons,
        "mei_correlation_median": float(np.median(correlation)),
        "mei_correlation_min": float(np.min(correlation)),
        "frac_mei_correlation_at_least_0.9": float(np.mean(correlation >= 0.9)),
        # A nonlinear truth can have several near-best images (e.g. of either polarity):
        # how well the fitted model's MEI drives the truth says more than pixel likeness there.
        "frac_abs_mei_correlation_at_least_0.9": float(np.mean(np.abs(correlation) >= 0.9)),
        "truth_response_to_fitted_mei_over_truth_mei": float(np.median(truth_ratio)),
        "truth_response_ratio_min": float(np.min(truth_ratio)),
        "frac_truth_response_ratio_at_least_0.9": float(np.mean(truth_ratio >= 0.9)),
        "rf_centre_error_median_px": float(np.median(error)),
        "frac_rf_centre_within_1px": float(np.mean(error <= 1.0)),
        "truth_model_rf_centre_error_median_px": float(np.median(truth_error)),
        # The cnn truth's cells read random 9x9 features whose energy is not centred on
        # the cell's location: the truth's own gradient RF is the fair target there.
        "rf_centre_distance_to_truth_model_rf_median_px": float(np.median(to_truth_rf)),
        "frac_rf_centre_within_1px_of_truth_model_rf": float(np.mean(to_truth_rf <= 1.0)),
        "rf_centre_error_at_mean_image_median_px": float(np.median(mean_error)),
        "frac_rf_centre_at_mean_image_within_1px": float(np.mean(mean_error <= 1.0)),
        "rf_local_images": int(len(images)),
        "mei_steps_median": float(np.median(meis_fitted.steps)),
        "mei_seconds_fitted_model": round(seconds_fitted, 1),
    }
    if out:
        os.makedirs(out, exist_ok=True)
        np.save(os.path.join(out, "meis_fitted.npy"), meis_fitted.images)
        np.save(os.path.join(out, "meis_truth.npy"), meis_truth.images)
        np.save(os.path.join(out, "mei_correlation.npy"), correlation)
        np.save(os.path.join(out, "rf_centres.npy"), rfs.center)
        with open(os.path.join(out, "summary.json"), "w") as file:
            json.dump(summary, file, indent=2)
        from keras_sysid import plots

        shown = np.arange(min(8, n_neurons))
        pairs = np.concatenate([meis_truth.images[shown], meis_fitted.images[shown]])
        labels = [f"truth {n}" for n in shown] + [f"fitted {n}: r={correlation[n]:.2f}" for n in shown]
        plots.plot_mei_grid(pairs, labels, os.path.join(out, "meis_truth_vs_fitted.png"), 0.0, columns=len(shown))
    return summary


def best_predicted(model, data, count: int, tier: str = "validation") -> np.ndarray:
    """Indices of the ``count`` neurons ``model`` predicts best on ``tier`` (single-trial correlation)."""
    inputs = data.model_inputs(tier, getattr(model, "input_names", ("images",)))
    predictions = model.predict(inputs, batch_size=256, verbose=0)
    correlation = metrics.correlation(data.responses[data.indices(tier)], predictions)
    return np.argsort(-np.nan_to_num(correlation, nan=-1.0))[:count]


def mouse_v1(model_name: str, data_path: str, out: str, n_best: int = 16, mei_steps: int = 1000,
             verbose: int = 1) -> dict:
    """The digital-twin report on a mouse V1 model; RF centres and tuning of every neuron.

    The 16 neurons are chosen on the validation tier (never the test tier). MEIs
    have the scan's images' mean contrast norm and pixel range, so each MEI is
    compared with the best of all the scan's images on equal terms.

    Returns:
        Summary: MEI / best-image activation ratios, RF-centre vs readout
        correlation per axis, preferred-orientation histogram, OSI quantiles, seconds.
    """
    model = zoo.load_any(model_name)
    data = load_recording(data_path)
    neurons = best_predicted(model, data, n_best)
    started = time.perf_counter()
    rf_images = data.images[np.random.default_rng(0).permutation(len(data.images))[:200]]
    report = insilico.digital_twin_report(model, neurons, data.images, mei_steps=mei_steps, rf_images=rf_images,
                                          verbose=verbose)
    seconds_report = time.perf_counter() - started
    paths = insilico.write_report(report, out, data.images)
    # Every neuron: RF centre at the mean image against the readout's position, and full-field tuning.
    all_neurons = np.arange(data.n_neurons)
    started = time.perf_counter()
    rfs = insilico.gradient_receptive_fields(model, all_neurons, batch_size=256)
    seconds_rfs = time.perf_counter() - started
    readout = model.rf_positions()
    # Neurons whose gradient is flat at the mean image (rectified there) have no envelope to fit.
    fitted = rfs.r2 > 0.5
    correlation = {axis: float(np.corrcoef(rfs.center[fitted, index], readout[fitted, index])[0, 1])
                   for index, axis in enumerate(("row", "column"))}
    pixel_range = (float(data.images.min()), float(data.images.max()))
    amplitude = insilico.grating_amplitude(report.meis.norm, data.image_shape, report.meis.background, pixel_range)
    tuning = insilico.tuning_curves(model, all_neurons, orientations=12, phases=8, batch_size=512,
                                    contrast=amplitude, background=report.meis.background)
    np.save(os.path.join(out, "all_rf_centres.npy"), rfs.center)
    np.save(os.path.join(out, "all_preferred_orientation.npy"), tuning.preferred_orientation)
    np.save(os.path.join(out, "all_osi.npy"), tuning.osi)
    ratio = report.meis.activations / report.best_natural_activation
    summary = {
        "model": model_name, "neurons": report.neurons.tolist(),
        "mei_norm": report.meis.norm, "pixel_range": list(pixel_range),
        "mei_to_best_image_ratio": {"median": float(np.median(ratio)), "min": float(np.min(ratio)),
                                    "max": float(np.max(ratio))},
        "best_image_norm_over_mei_norm_median": float(np.median(report.natural_norm / report.meis.norm)),
        "mei_seconds_16_neurons_report": round(seconds_report, 1),
        "rf_centre_vs_readout_correlation": correlation,
        "rf_fitted_fraction": float(np.mean(fitted)),
        "rf_seconds_all_neurons": round(seconds_rfs, 1),
        "preferred_orientation_histogram_deg": np.histogram(np.degrees(tuning.preferred_orientation),
                                                            bins=np.linspace(0, 180, 13))[0].tolist(),
        "osi_quantiles": dict(zip(("10%", "50%", "90%"), np.quantile(tuning.osi, [0.1, 0.5, 0.9]).tolist())),
        "files": sorted(os.path.basename(path) for path in paths.values()),
    }
    with open(os.path.join(out, "summary.json"), "w") as file:
        json.dump(summary, file, indent=2)
    from keras_sysid import plots

    rows = report.table()
    plots.plot_mei_grid(report.meis.images, [f"{r['neuron']}: x{r['mei_to_natural_ratio']:.1f}" for r in rows],
                        os.path.join(out, "meis.png"), report.meis.background)
    plots.plot_mei_grid(data.images[report.best_natural_index], [f"{r['neuron']}: best image" for r in rows],
                        os.path.join(out, "best_images.png"), report.meis.background)
    plots.plot_rf_centres(rfs.center[fitted], data.image_shape, os.path.join(out, "rf_centres.png"),
                          reference=readout[fitted], title="Gradient RF centres vs readout positions")
    plots.plot_tuning(tuning.orientations, tuning.orientation_curve(), tuning.preferred_orientation, tuning.osi,
                      list(all_neurons), os.path.join(out, "tuning.png"))
    return summary
