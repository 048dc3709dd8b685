"""How each shipped zoo entry is made: model, facts (metadata.json) and model card.

``tools/build_zoo.py --entry NAME`` runs a recipe and writes the entry with
:func:`keras_sysid.zoo.save`. Every card states what the model predicts, its
input and output units, the data (with citation and licence), the command
that trained it and the metrics measured with ``tools/evaluate.py`` (or, for
synthetic entries, against the known truth).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re

import numpy as np

from keras_sysid import evaluation, zoo
from keras_sysid.data import load as load_recording
from keras_sysid.ensemble import Ensemble
from keras_sysid.experiments import rivals
from keras_sysid.experiments.presets import RIVALS, SOTA_VARIANTS, FitSettings, zoo_synthetic_config
from keras_sysid.recipes.synthetic import run_synthetic
from keras_sysid.simulators import groundtruth_model

MOUSE_V1_CITATION = (
    "Lurz, K.-K., Bashiri, M., Willeke, K., et al. (2021). Generalization in data-driven models of "
    "primary visual cortex. ICLR 2021."
)
MOUSE_V1_LICENCE = (
    "Trained on data licensed CC BY-NC-ND 4.0 by its authors: non-commercial research only; "
    "cite Lurz et al. (2021)."
)
KLINDT_CITATION = (
    "Klindt, D. A., Ecker, A. S., Euler, T., & Bethge, M. (2017). Neural system identification for large "
    "populations separating \"what\" and \"where\". NeurIPS 30."
)
_MOUSE_DATA = "static20457-5-9-preproc0 (mouse V1 L2/3, 5335 neurons, 36x64 grey-scale natural images)"


# The model card of an entry, written from its facts (one writer, in keras_sysid.zoo).


def _card_text(hidden=()):
    """A card writer for :func:`keras_sysid.zoo.save`: the card of the facts as saved (with the provenance and
    architecture that ``save`` adds), without the ``hidden`` keys (too long for a card: locations, choices)."""
    return lambda facts: zoo.model_card({key: value for key, value in facts.items() if key not in hidden})

MOUSE_V1_INTENDED_USE = [
    "Predicting the responses of this scan's 5335 neurons (mouse 20457, session 5, scan 9; V1 layer 2/3) to "
    "grey-scale natural images like those it was trained on (36x64 pixels, values as stored, 0..255).",
    "In-silico experiments on these neurons (most exciting inputs, receptive fields, tuning curves) and a "
    "pretrained core for new neurons (keras_sysid.transfer).",
    "Non-commercial research only: the data's licence (CC BY-NC-ND 4.0) binds models trained on it.",
]
MOUSE_V1_LIMITATIONS = [
    "Test metrics are on 50 of the 100 published test images (500 trials, the ones in the data); the data's "
    "providers hold the other 50 back as an independent check.",
    "One scan of one animal: neuron i of the output is unit_ids[i] of this data set; for other neurons a "
    "readout must be fitted (keras_sysid.transfer).",
    "Readout positions live on the core's output grid, which a valid first convolution makes smaller than the "
    "image (by 12 pixels in each direction for the paper's 13x13 core, 8 for Lurz et al.'s 9x9 one): neurons "
    "whose receptive fields lie at the image border are modelled less well.",
    "It predicts the response to a static flashed image in the published response window, not to movies.",
    "Only 4472 training trials: the fraction of oracle in the metrics says how much of the explainable "
    "variance the model leaves unexplained.",
]
_STATE_LIMITATION = (
    "It needs each trial's behaviour and pupil centre (data/behavior/, data/pupil_center/); for images without "
    "a recorded animal (new stimuli, MEIs) give the train tier's mean state. Its single-trial correlation can "
    "exceed the oracle, which is computed from image repeats only: the state explains trial-to-trial variance "
    "that repeats average out, so its fraction of oracle is not comparable with image-only models'."
)
_IMAGE_ONLY_LIMITATION = (
    "It sees images only: trial-to-trial changes with the animal's state (running, pupil size, eye position) "
    "are not modelled."
)
SYNTHETIC_INTENDED_USE = [
    "Testing methods against a known truth: the simulated cells' locations and types are known, so recovered "
    "receptive fields, MEIs and tuning can be checked exactly.",
    "Tutorials and tests; not a model of any real neurons.",
]


def _input_scale(model) -> str:
    """What a card says about the scale of the images the model takes."""
    mean, std = model.image_mean, model.image_std
    return (f"images as stored in the data; the model standardises them with the training images' mean {mean:.4g} "
            f"and std {std:.4g}, and warns when given images far off that scale (e.g. 0..1 instead of 0..255)")


def fit_facts(epochs, settings: FitSettings, max_epochs: int | None = None, seconds=None) -> dict:
    """The ``training`` facts of a card: epochs trained, the stopping rule and the optimiser."""
    facts = {
        "epochs_trained": epochs,
        "max_epochs": max_epochs if max_epochs is not None else settings.max_epochs,
        "stopping_rule": (
            f"early stopping on the validation tier's correlation: after {settings.patience} epochs without "
            f"improvement the best weights are restored and the learning rate divided by 3, {settings.n_decays} "
            "times; the next plateau (or the epoch limit) stops; the best epoch's weights are kept"
        ),
        "optimizer": (f"Adam, learning rate {settings.learning_rate:g}, batch {settings.batch_size}, seed "
                      f"{settings.seed}; Poisson loss on responses divided by each neuron's train-tier std"),
    }
    if seconds is not None:
        facts["minutes"] = round(float(seconds) / 60.0, 1)
        facts["minutes_measured"] = "wall clock of the fit(s), resumed runs summed, pauses and other jobs included"
    return facts


def _run_results(model_path: str) -> dict:
    """The ``results.json`` next to a fitted ``model.keras`` (epochs, seconds), or ``{}``."""
    path = os.path.join(os.path.dirname(os.path.abspath(model_path)), "results.json")
    if not os.path.isfile(path):
        return {}
    with open(path) as file:
        return json.load(file)


# Stored factorized masks are zeroed below this fraction of each neuron's peak.
MASK_PRUNING = 0.01


def mouse_v1(
    rival: str, data_path: str, model_path: str | None = None, settings: FitSettings | None = None,
    trained_with: str | None = None,
):
    """A rival fitted to the mouse V1 scan (or read from ``model_path``), scored on its test tier.

    Returns:
        ``(model, facts, card_text)``.
    """
    data = load_recording(data_path)
    settings = settings or FitSettings()
    if model_path:
        model = zoo.load_any(model_path)
        trained_with = trained_with or f"python tools/reproduce.py --experiment mouse_v1 --data {data.name}.zip --models {rival}"
        info = _run_results(model_path)
    else:
        model, info = rivals.fit_rival(rival, data, settings, verbose=2)
        trained_with = f"python tools/build_zoo.py --entry mouse_v1_{rival} --data {data.name}.zip"
    used = FitSettings(**info["settings"]) if "settings" in info else settings
    # A rival's own learning rate takes precedence (presets.RIVALS).
    used = dataclasses.replace(used, learning_rate=RIVALS[rival].get("learning_rate", used.learning_rate))
    training = fit_facts(info.get("epochs", "not recorded with the model file"), used, seconds=info.get("seconds"))
    pruning = {}
    if rival == "factorized":
        # Chosen on the validation tier: zeroing mask entries below 1% of each
        # neuron's peak kept its correlation (0.2505 vs 0.2502) and 15% of the
        # entries, so the stored (compressed) weights are about 3x smaller.
        kept = model.readout.prune_mask(MASK_PRUNING)
        pruning = {"mask_pruned_below": f"{MASK_PRUNING:g} of each neuron's peak", "mask_entries_kept": round(kept, 4)}
    scores = evaluation.evaluate_model(model, data, "test").summary()
    description = (
        f"The {rival} model of keras_sysid.experiments.rivals: predicts the responses of 5335 mouse V1 neurons "
        "to grey-scale natural images."
    )
    facts = {**_mouse_v1_facts(f"mouse_v1_{rival}", description, _INPUT_UNITS["images"], data, trained_with, scores,
                               model, training),
             **pruning}
    return model, facts, _card_text()


def _mouse_v1_facts(name: str, description: str, inputs: str, data, trained_with: str, scores: dict,
                    model, training: dict) -> dict:
    """The card facts every mouse V1 entry states: what it predicts, from what data, how made and scored, its use."""
    members = model.members if isinstance(model, Ensemble) else [model]
    image_only = all(tuple(getattr(member, "input_names", ("images",))) == ("images",) for member in members)
    return {
        "name": name,
        "description": description,
        "input": inputs,
        "input_scale": _input_scale(members[0]),
        "output": "responses float32 (batch, 5335), in the data's units (the published responses)",
        "n_neurons": data.n_neurons,
        "image_shape": list(data.image_shape),
        "data": _MOUSE_DATA,
        "neuron_ids": "output column i is unit_ids[i] of meta/neurons/unit_ids.npy of the data set (file order)",
        "citation": MOUSE_V1_CITATION,
        "licence": MOUSE_V1_LICENCE,
        "trained_with": trained_with,
        "training": training,
        "intended_use": MOUSE_V1_INTENDED_USE,
        "limitations": MOUSE_V1_LIMITATIONS + [_IMAGE_ONLY_LIMITATION if image_only else _STATE_LIMITATION],
        "evaluated_with": f"python tools/evaluate.py --model {name} --data {data.name}.zip",
        "metrics": scores,
    }


def synthetic_groundtruth(ground_truth: str):
    """The true generating model of the default synthetic population (seed 0) as a simulator."""
    config = zoo_synthetic_config(ground_truth)
    # The same split sizes as tools/train.py: the simulation draws the images
    # before the cells' filters, so other sizes would give another truth.
    population = config.population()
    model = groundtruth_model(population)
    error = float(np.max(np.abs(model.predict(population.test.images, verbose=0) - population.test.clean_responses)))
    facts = {
        "name": f"synthetic_{ground_truth}_groundtruth",
        "description": (
            f"The exact generating model of keras_sysid's '{ground_truth}' synthetic ground truth "
            f"({config.n_neurons} neurons, {config.n_types} types, seed {config.seed}): a simulator of noise-free rates."
        ),
        "input": f"white-noise images float32 (batch, {config.image_size}, {config.image_size}, 1)",
        "output": f"noise-free rates float32 (batch, {config.n_neurons})",
        "locations": population.locations.tolist(),
        "types": population.types.tolist(),
        "data": "simulated, no recorded data",
        "citation": KLINDT_CITATION,
        "licence": "Apache-2.0 (this project)",
        "input_scale": "white noise as the simulation draws it (zero mean, unit variance); no standardisation",
        "neuron_ids": "output column i is simulated cell i (its location and type are listed in metadata.json)",
        "trained_with": f"python tools/build_zoo.py --entry synthetic_{ground_truth}_groundtruth (constructed, not trained)",
        "training": "none: the generating model itself, built from the simulation's parameters",
        "intended_use": SYNTHETIC_INTENDED_USE,
        "limitations": ["Noise-free rates: the simulation's response noise is not part of the model."],
        "metrics": {"max_abs_error_vs_numpy_truth": error},
    }
    return model, facts, _card_text(hidden=("locations", "types"))


def synthetic_factorized(ground_truth: str):
    """The paper's factorized model fitted to the default synthetic population (``tools/train.py``)."""
    config = zoo_synthetic_config(ground_truth)
    model, results = run_synthetic(config, verbose=2)
    flags = "" if ground_truth == "dog" else " --ground_truth cnn --n_types 4"
    facts = {
        "name": f"synthetic_{ground_truth}_factorized",
        "description": (
            f"The factorized model fitted to keras_sysid's '{ground_truth}' synthetic ground truth "
            f"({config.n_neurons} neurons, {config.n_types} types, seed {config.seed})."
        ),
        "input": f"white-noise images float32 (batch, {config.image_size}, {config.image_size}, 1)",
        "output": f"rates float32 (batch, {config.n_neurons})",
        "data": "simulated, no recorded data",
        "citation": KLINDT_CITATION,
        "licence": "Apache-2.0 (this project)",
        "input_scale": "white noise as the simulation draws it (zero mean, unit variance)",
        "neuron_ids": "output column i is simulated cell i of the population (seed above)",
        "trained_with": f"python tools/train.py{flags}",
        "training": synthetic_fit_facts(config, results.get("epochs")),
        "intended_use": SYNTHETIC_INTENDED_USE,
        "limitations": ["Fitted to simulated white-noise responses: not a model of any real neurons."],
        "config": dataclasses.asdict(config),
        "metrics": {key: results[key] for key in ("fev", "fev_median", "rf_error_px", "frac_rf_within_1px", "corr_test")},
    }
    return model, facts, _card_text()


def synthetic_fit_facts(config, epochs) -> dict:
    """The ``training`` facts of a model fitted by ``tools/train.py`` (the paper's schedule)."""
    return {
        "epochs_trained": epochs if epochs is not None else "not recorded with the entry",
        "max_epochs": config.epochs,
        "stopping_rule": (
            f"early stopping on the validation loss: after {config.patience} epochs without improvement the best "
            "weights are restored and the learning rate divided by 3, 3 times (Klindt et al. 2017); the next "
            "plateau stops; the best epoch's weights are kept"
        ),
        "optimizer": f"Adam, learning rate {config.learning_rate:g}, batch {config.batch_size}, Poisson loss",
    }


_INPUT_UNITS = {
    "images": "images float32 (batch, 36, 64, 1), pixel values as stored in the data (0..255)",
    "behavior": "behavior float32 (batch, 3): pupil dilation, its derivative, running speed, as in data/behavior/",
    "pupil_center": "pupil_center float32 (batch, 2): pupil position in the eye camera, as in data/pupil_center/",
}
# Ablation variants whose model takes more than images.
_STATE_VARIANTS = ("behavior_channels", "shifter", "modulator")


def _inputs_fact(input_names) -> str:
    if tuple(input_names) == ("images",):
        return _INPUT_UNITS["images"]
    return "a dict: " + "; ".join(_INPUT_UNITS[name] for name in input_names)


def mouse_v1_sota(entry: str, data_path: str, run_folder: str):
    """The best models of ``tools/reproduce.py --experiment mouse_v1_sota``, read from its output folder.

    ``mouse_v1_ensemble``: the ensemble of the variant best on validation
    (``choices.json``); ``mouse_v1_behavior``: the behaviour-aware variant best
    on validation. Both are scored on the test tier here.

    Returns:
        ``(model, facts, card_text)``.
    """
    if not run_folder:
        raise ValueError(f"{entry} needs --model: the output folder of tools/reproduce.py --experiment mouse_v1_sota.")
    with open(os.path.join(run_folder, "choices.json")) as file:
        choices = json.load(file)
    data = load_recording(data_path)
    best = choices["best_variant"]
    if entry == "mouse_v1_ensemble":
        members = [best] + sorted(
            name for name in os.listdir(run_folder) if name.startswith(f"{best}_seed") and
            os.path.exists(os.path.join(run_folder, name, "results.json"))
        )
        model = Ensemble([zoo.load_any(os.path.join(run_folder, name, "model.keras")) for name in members],
                         name="mouse_v1_ensemble")
        description = (
            f"The average of {len(members)} fits (seeds 0..{len(members) - 1}) of the '{best}' model of "
            "keras_sysid.experiments.mouse_v1_sota, the variant best on the validation tier: predicts the "
            "responses of 5335 mouse V1 neurons to grey-scale natural images."
        )
    else:
        state = {name: value for name, value in choices["validation"].items() if name in _STATE_VARIANTS}
        chosen = max(state, key=state.get)
        model = zoo.load_any(os.path.join(run_folder, chosen, "model.keras"))
        spec = SOTA_VARIANTS[chosen]
        parts = [part for key, part in (("behavior_channels", "behaviour as core channels"),
                                        ("shifter", "a shifter from the eye position"),
                                        ("modulator", "a gain modulator from behaviour")) if spec.get(key)]
        description = (
            f"The '{chosen}' model of keras_sysid.experiments.mouse_v1_sota, the behaviour-aware variant best on "
            f"the validation tier (Lurz et al.'s core, cortex-predicted Gaussian readout positions, "
            f"{', '.join(parts)}): predicts the responses of 5335 mouse V1 neurons."
        )
        members = [chosen]
    scores = evaluation.evaluate_model(model, data, "test").summary()
    trained_with = f"python tools/reproduce.py --experiment mouse_v1_sota --data {data.name}.zip"
    runs = [_run_results(os.path.join(run_folder, name, "model.keras")) for name in members]
    settings = FitSettings(**runs[0]["settings"]) if "settings" in runs[0] else FitSettings()
    epochs = [run.get("epochs") for run in runs]
    training = fit_facts(epochs if len(epochs) > 1 else epochs[0], settings,
                         seconds=sum(run.get("seconds", 0.0) for run in runs) or None)
    if len(members) > 1:
        training["members"] = f"{len(members)} fits, one per seed, each with this schedule; epochs_trained per member"
        training["optimizer"] = training["optimizer"].replace(
            f"seed {settings.seed}", f"seeds {settings.seed}..{settings.seed + len(members) - 1} (one per member)")
    facts = {
        **_mouse_v1_facts(entry, description, _inputs_fact(model.input_names), data, trained_with, scores,
                          model, training),
        "input_names": list(model.input_names),
        "chosen_on_validation": choices,
    }
    return model, facts, _card_text(hidden=("chosen_on_validation",))


# Epochs trained and the epoch limit of the fits behind the mouse V1 entries
# saved before cards recorded them: docs/results.md, Table 1 (gaussian: 40 of 40;
# factorized: 60 of 60, --max_epochs 60). Their other settings are today's
# FitSettings and RIVALS learning rates, the same at the commits that saved them
# (5a92816, 2f5edd9).
_RECORDED_EPOCHS = {"mouse_v1_gaussian": (40, 40), "mouse_v1_factorized": (60, 60)}
# When those entries' weights were saved (the repository's history: the commit that added them).
_SAVED_ON = {
    "mouse_v1_gaussian": "2026-11-24", "mouse_v1_factorized": "2026-11-25", "synthetic_dog_factorized": "2026-11-25",
    "synthetic_cnn_factorized": "2026-11-25", "synthetic_dog_groundtruth": "2026-11-24",
    "synthetic_cnn_groundtruth": "2026-11-24",
}


def _same_metrics(stored: dict, measured: dict, entry: str, keys) -> None:
    for key in keys:
        if key in stored and abs(float(stored[key]) - float(measured[key])) > 1e-4:
            raise ValueError(f"{entry}: re-measured {key} {measured[key]:.6f} differs from the card's {stored[key]:.6f}; "
                             "the entry is not the model its card describes. Rebuild it instead.")


def refreshed_card(entry: str, folder: str, data_path: str | None = None) -> dict:
    """The facts today's cards state, for an entry saved before they did; its metrics re-measured first.

    For :func:`keras_sysid.zoo.rewrite_card`: the entry's model files stay as
    they are. Mouse V1 entries are scored again on the test tier of
    ``data_path``; synthetic ones against their re-simulated truth. A metric
    that differs from the card's by more than 1e-4 raises ``ValueError``.

    Returns:
        The facts to add or replace.
    """
    saved = {"saved_on": f"{_SAVED_ON[entry]} (the repository's history)"} if entry in _SAVED_ON else {}
    return {**saved, **_refreshed_facts(entry, folder, data_path)}


def _refreshed_facts(entry: str, folder: str, data_path: str | None) -> dict:
    model = zoo.load(folder)
    stored = zoo.metadata(folder)
    if entry.startswith("mouse_v1_") and entry in _RECORDED_EPOCHS:
        if not data_path:
            raise ValueError(f"{entry}: refreshing its card needs --data (its metrics are re-measured).")
        data = load_recording(data_path)
        scores = evaluation.evaluate_model(model, data, "test").summary()
        _same_metrics(stored["metrics"], scores, entry, ("corr_single", "corr_avg", "feve", "frac_oracle"))
        rival = entry.removeprefix("mouse_v1_")
        epochs, max_epochs = _RECORDED_EPOCHS[entry]
        settings = FitSettings(max_epochs=max_epochs,
                               learning_rate=RIVALS[rival].get("learning_rate", FitSettings.learning_rate))
        description = stored["description"].replace("keras_sysid.rivals", "keras_sysid.experiments.rivals")
        return _mouse_v1_facts(entry, description, _INPUT_UNITS["images"], data, stored["trained_with"],
                               stored["metrics"], model, fit_facts(epochs, settings))
    if not re.fullmatch(r"synthetic_(dog|cnn)_(factorized|groundtruth)", entry):
        raise ValueError(f"{entry}: no recorded facts to refresh its card from; rebuild it with tools/build_zoo.py.")
    truth = entry.split("_")[1]
    population = zoo_synthetic_config(truth).population()
    if entry.endswith("_groundtruth"):
        _, facts, _ = synthetic_groundtruth(truth)
        error = float(np.max(np.abs(model.predict(population.test.images, verbose=0) - population.test.clean_responses)))
        if error > 1e-4:
            raise ValueError(f"{entry}: the stored simulator is off the truth by {error:g}.")
        return {key: facts[key] for key in ("input_scale", "neuron_ids", "training", "intended_use", "limitations")}
    config = zoo_synthetic_config(truth)
    fev = float(np.mean(evaluation.scores_against_truth(model, population.test)["fev"]))
    _same_metrics(stored["metrics"], {"fev": fev}, entry, ("fev",))
    return {
        "input_scale": "white noise as the simulation draws it (zero mean, unit variance)",
        "neuron_ids": "output column i is simulated cell i of the population (seed above)",
        "training": synthetic_fit_facts(config, None),
        "intended_use": SYNTHETIC_INTENDED_USE,
        "limitations": ["Fitted to simulated white-noise responses: not a model of any real neurons."],
    }


RECIPES = {
    "mouse_v1_ensemble": lambda args: mouse_v1_sota("mouse_v1_ensemble", args["data"], args.get("model")),
    "mouse_v1_behavior": lambda args: mouse_v1_sota("mouse_v1_behavior", args["data"], args.get("model")),
    "mouse_v1_factorized": lambda args: mouse_v1("factorized", args["data"], args.get("model"), trained_with=args.get("trained_with")),
    "mouse_v1_gaussian": lambda args: mouse_v1("gaussian", args["data"], args.get("model"), trained_with=args.get("trained_with")),
    "synthetic_dog_groundtruth": lambda args: synthetic_groundtruth("dog"),
    "synthetic_cnn_groundtruth": lambda args: synthetic_groundtruth("cnn"),
    "synthetic_dog_factorized": lambda args: synthetic_factorized("dog"),
    "synthetic_cnn_factorized": lambda args: synthetic_factorized("cnn"),
}
