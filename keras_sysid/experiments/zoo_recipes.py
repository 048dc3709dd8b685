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

import numpy as np

from keras_sysid import evaluation, zoo
from keras_sysid.data.static import load_static
from keras_sysid.ensemble import Ensemble
from keras_sysid.experiments import rivals
from keras_sysid.experiments.presets import FitSettings, zoo_synthetic_config
from keras_sysid.experiments.synthetic import run_synthetic
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
_card_text = zoo.model_card


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
    data = load_static(data_path)
    if model_path:
        model = zoo.load_any(model_path)
        trained_with = trained_with or f"python tools/reproduce.py --experiment mouse_v1 --data {data.name}.zip --models {rival}"
    else:
        model, _ = rivals.fit_rival(rival, data, settings, verbose=2)
        trained_with = f"python tools/build_zoo.py --entry mouse_v1_{rival} --data {data.name}.zip"
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
    facts = {**_mouse_v1_facts(f"mouse_v1_{rival}", description, _INPUT_UNITS["images"], data, trained_with, scores),
             **pruning}
    return model, facts, _card_text(facts)


def _mouse_v1_facts(name: str, description: str, inputs: str, data, trained_with: str, scores: dict) -> dict:
    """The card facts every mouse V1 entry states: what it predicts, from what data, how made and scored."""
    return {
        "name": name,
        "description": description,
        "input": inputs,
        "output": "responses float32 (batch, 5335), in the data's units (the published responses)",
        "n_neurons": data.n_neurons,
        "image_shape": list(data.image_shape),
        "data": _MOUSE_DATA,
        "neuron_ids": "unit_ids in meta/neurons/unit_ids.npy of the data set, in file order",
        "citation": MOUSE_V1_CITATION,
        "licence": MOUSE_V1_LICENCE,
        "trained_with": trained_with,
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
        "trained_with": f"python tools/build_zoo.py --entry synthetic_{ground_truth}_groundtruth (constructed, not trained)",
        "metrics": {"max_abs_error_vs_numpy_truth": error},
    }
    return model, facts, _card_text({k: v for k, v in facts.items() if k not in ("locations", "types")})


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
        "trained_with": f"python tools/train.py{flags}",
        "config": dataclasses.asdict(config),
        "metrics": {key: results[key] for key in ("fev", "fev_median", "rf_error_px", "frac_rf_within_1px", "corr_test")},
    }
    return model, facts, _card_text(facts)


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
    data = load_static(data_path)
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
        description = (
            f"The '{chosen}' model of keras_sysid.experiments.mouse_v1_sota, the behaviour-aware variant best on "
            "the validation tier (Lurz et al.'s core, cortex-predicted Gaussian readout positions, and the "
            "animal's behaviour and eye position as inputs): predicts the responses of 5335 mouse V1 neurons."
        )
    scores = evaluation.evaluate_model(model, data, "test").summary()
    trained_with = f"python tools/reproduce.py --experiment mouse_v1_sota --data {data.name}.zip"
    facts = {
        **_mouse_v1_facts(entry, description, _inputs_fact(model.input_names), data, trained_with, scores),
        "input_names": list(model.input_names),
        "chosen_on_validation": choices,
    }
    return model, facts, _card_text({k: v for k, v in facts.items() if k != "chosen_on_validation"})


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
