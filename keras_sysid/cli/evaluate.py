r"""Score a fitted model: on the test tier of a recording, or against a synthetic truth.

With ``--data`` (a ``static*-preproc0`` zip or folder, or an NWB file),
prints its progress (reading, predicting), then, as its last line, one JSON
object with ``corr_single``, ``corr_avg``, ``feve``, ``frac_oracle``,
``oracle``, ``n_neurons``, ``n_trials``, ``n_images`` and ``info_gain`` (see
``keras_sysid.evaluation``), and, for a model that takes the animal's state,
``trial_corr`` (how well it predicts the differences between repeats of one
image; ``keras_sysid.trial_variability``).

The scores, per neuron, then summarised over neurons. Image i of the tier
was shown R_i times; y[i,r] is a trial's response, p[i,r] the model's
prediction of it, ybar[i] and pbar[i] their means over the repeats:

  corr_single  mean over neurons of corr(y[i,r], p[i,r]) over all trials.
  corr_avg     mean over neurons of corr(ybar[i], pbar[i]) over images.
  feve         1 - (MSE - noise_var) / (total_var - noise_var), with MSE the
               mean of (y[i,r] - pbar[i])^2, noise_var the mean over images
               of the variance across repeats, total_var the variance over
               trials; the mean over neurons with explainable variance.
  oracle       mean over neurons of the leave-one-out oracle correlation:
               corr(y[i,r], mean of the image's other repeats).
  frac_oracle  sum(corr_single_n * oracle_n) / sum(oracle_n^2) over neurons:
               the slope of single-trial correlation against the oracle's.
               A model of the animal's state can exceed 1: the oracle
               predicts a trial from the other repeats of its image only,
               while a state model also sees this trial's behaviour, which
               explains part of what the oracle counts as noise.
  info_gain    normalized information gain against a Bayesian oracle
               (Lurz, Bashiri et al. 2023): sum(LL_model - LL_null) /
               sum(LL_oracle - LL_null) over neurons, LL a neuron's mean log
               density of the trials under a zero-inflated gamma: the null
               fitted to the train tier; the model's with the prediction as
               its mean, its spread fitted on the validation tier; the oracle
               the posterior predictive given the image's other repeats, its
               prior fitted over images (empirical Bayes). 0 is the null, 1
               the oracle; left out without train and validation tiers or
               for --tier validation (keras_sysid.information_gain).

Definitions with their reasons: the "Scores and metrics" page of the docs.

Without ``--data``, the model must be a synthetic zoo entry (a name or a
zoo-format folder): its population is simulated again (seeded, so the same
one) from the ``config`` in the entry's ``metadata.json`` and the model is
scored on the noise-free rates of its test split. The last line holds the
card's metric keys: ``fev``, ``fev_median``, ``rf_error_px``,
``frac_rf_within_1px``, ``corr_test`` for a fitted model, or
``max_abs_error_vs_numpy_truth`` for a ``*_groundtruth`` simulator (its
population is the zoo's default one when the entry stores no ``config``).

Examples:

  keras-sysid evaluate --model runs/mouse_v1/factorized/model.keras \
      --data ../shared/data/mouse_v1_lurz2021/static20457-5-9-preproc0.zip

  # A zoo model.
  keras-sysid evaluate --model mouse_v1_gaussian \
      --data ../shared/data/mouse_v1_lurz2021/static20457-5-9-preproc0.zip

  # A synthetic zoo entry, against its known truth.
  keras-sysid evaluate --model synthetic_cnn_factorized
  keras-sysid evaluate --model synthetic_dog_groundtruth

  # A recording in an NWB file.
  keras-sysid evaluate --model runs/fit/session/model.keras --data session.nwb

  # One recording of a model fitted to several (keras-sysid fit --data A --data B): its session.
  keras-sysid evaluate --model runs/fit/two_scans/model.keras --data B.zip

  # Another tier with repeats, and per-neuron scores saved.
  keras-sysid evaluate --model model.keras --data static-folder/ \
      --tier validation --per_neuron scores.npz

With --seeds (instead of --model), it compares fits of the same neurons,
e.g. from different seeds (keras_sysid.consistency): for each pair, the
Pearson correlation across neurons of the receptive-field positions' row and
column (rf_positions, image pixels) and their median distance in pixels; and
the adjusted Rand index between the two fits' k-means clusterings of the
neurons' unit-length readout feature vectors, at each --n_clusters k (feature
spaces of different fits are not aligned, so partitions are compared, not
vectors). The last line gives each as mean and sd over the pairs, with chance
levels (shuffled neurons) and the ARI of one fit clustered from two k-means
seeds (the ceiling).

  # The five members of the mouse V1 ensemble; or run folders, .keras files, zoo names.
  keras-sysid evaluate --seeds mouse_v1_ensemble
  keras-sysid evaluate --seeds runs/fit/seed0,runs/fit/seed1,runs/fit/seed2 --n_clusters 5,10
"""

import json
import os
import re
import sys
import time

import numpy as np
from absl import flags

from keras_sysid import atomic_files, evaluation, inference_forms, metrics, trial_variability, zoo
from keras_sysid.cli import _backend, _recordings, _seeds
from keras_sysid.cli._recordings import load_recording, nwb_options
from keras_sysid.data.recording import KNOWN_TIERS, RecordingError
from keras_sysid.multisession import MultiSessionModel, session_name_for

# Its documentation page, linked from --help (keras_sysid.cli.main.docs_link).
DOCS_PAGE = "your-data/"

# Not required by absl: --seeds compares several fits instead (checked in main).
_MODEL = flags.DEFINE_string("model", None, "A .keras file, a zoo name or a zoo-format folder.")
_DATA = flags.DEFINE_string(
    "data", None,
    "A static*-preproc0 zip file or folder, or an .nwb file. Leave out for a synthetic zoo entry (scored against "
    "its known truth).",
)
_TIER = flags.DEFINE_enum("tier", "test", list(KNOWN_TIERS), "Tier to score (needs repeated images).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 256, "Prediction batch size.")
_PER_NEURON = flags.DEFINE_string("per_neuron", None, "Also write per-neuron scores to this .npz file.")
_SESSION = flags.DEFINE_string(
    "session", None,
    "A multi-session model's session to score --data with; default: the session named after the recording.",
)

flags.adopt_module_key_flags(_recordings)  # --help lists the --nwb_* flags
flags.adopt_module_key_flags(_seeds)  # and --seeds, --n_clusters

GROUNDTRUTH_METRIC = "max_abs_error_vs_numpy_truth"


def _synthetic_config(facts: dict):
    """The run config behind a synthetic entry: its metadata's, or the zoo default for a ``*_groundtruth``."""
    from keras_sysid.recipes.presets import SyntheticRunConfig, zoo_synthetic_config

    if isinstance(facts.get("config"), dict):
        try:
            return SyntheticRunConfig(**facts["config"])
        except TypeError as error:
            raise ValueError(f"{_MODEL.value}: metadata.json's config is not a SyntheticRunConfig ({error}).") from None
    match = re.fullmatch(r"synthetic_(\w+)_groundtruth", str(facts.get("name", "")))
    if match:
        return zoo_synthetic_config(match.group(1))
    raise ValueError(
        f"{_MODEL.value}: --data is needed; without it the model must be a synthetic zoo entry whose "
        "metadata.json holds the run's 'config' (or a synthetic_<truth>_groundtruth entry)."
    )


def score_against_truth(model, facts: dict, batch_size: int) -> dict:
    """The card metrics of a synthetic entry, re-measured on its re-simulated population."""
    config = _synthetic_config(facts)
    population = config.population()
    if "locations" in facts and not np.array_equal(np.asarray(facts["locations"]), population.locations):
        raise ValueError(f"{_MODEL.value}: the simulated population's locations differ from the entry's card.")
    card_metrics = facts.get("metrics", {})
    if GROUNDTRUTH_METRIC in card_metrics:
        prediction = model.predict(population.test.images, batch_size=batch_size, verbose=0)
        return {GROUNDTRUTH_METRIC: float(np.max(np.abs(prediction - population.test.clean_responses)))}
    scores = evaluation.scores_against_truth(model, population.test, batch_size)
    distance = metrics.rf_distance(model.rf_positions(), population.locations)
    return {
        "fev": float(np.mean(scores["fev"])),
        "fev_median": float(np.median(scores["fev"])),
        "rf_error_px": float(np.median(distance)),
        "frac_rf_within_1px": float(np.mean(distance <= 1.0)),
        "corr_test": float(np.mean(scores["correlation"])),
    }


def session_for(model, data_name: str, session: str | None):
    """``model``, or, for a multi-session model, its session ``session`` (default: named after the recording)."""
    if not isinstance(model, MultiSessionModel):
        if session is not None:
            raise ValueError(f"--session {session}: {_MODEL.value} is a single-session model.")
        return model
    name = session if session is not None else session_name_for(data_name)
    if name not in model.sessions:
        raise ValueError(f"{_MODEL.value} has no session {name!r} (sessions: {list(model.sessions)}); "
                         "choose one with --session.")
    own = session_name_for(data_name)
    if name != own and own in model.sessions:
        raise ValueError(f"recording {data_name} is session {own!r} of {_MODEL.value}, not --session {name}: "
                         f"scoring it with session {name!r} would compare different cells. Leave out --session "
                         f"(or give --session {own}).")
    return model.sessions[name]


def check_fits(model, data, session: str | None = None) -> None:
    """Refuses ``data`` when ``model`` cannot be its model: another neuron count or image shape.

    Scoring a recording with a model of other neurons compares unrelated
    cells and gives a meaningless score (near 0) instead of an error.
    ``session`` names the multi-session model's session ``model`` is, for the message.
    """
    model_is, owner = (f"session {session!r}", "the session's") if session else ("the model", "the model's")
    differences = []
    n_neurons = getattr(model, "n_neurons", None)
    if n_neurons is not None and int(n_neurons) != data.n_neurons:
        differences.append(f"the recording has {data.n_neurons} neurons, {model_is} {int(n_neurons)}")
    image_shape = tuple(int(d) for d in getattr(model, "image_shape", None) or ())
    if len(image_shape) in (2, 3) and image_shape != data.images.shape[1:1 + len(image_shape)]:
        shape = "x".join(map(str, data.images.shape[1:1 + len(image_shape)]))
        differences.append(f"its images are {shape}, {owner} {'x'.join(map(str, image_shape))}")
    if differences:
        what = f"session {session!r} of {_MODEL.value}" if session else f"{_MODEL.value}'s"
        raise ValueError(f"recording {data.name} cannot be {what}: {'; '.join(differences)}."
                         + (" Choose the recording's session with --session." if session else ""))


def main(argv):
    del argv
    _backend.check()
    if _seeds.given():  # Comparing fits with each other (keras_sysid.consistency), not scoring one.
        _seeds.main({"model": _MODEL.value, "data": _DATA.value, "per_neuron": _PER_NEURON.value,
                     "session": _SESSION.value})
        return
    if _MODEL.value is None:
        sys.exit("error: --model is needed (or --seeds, to compare several fits of the same neurons).")
    if _DATA.value is None:
        try:
            if _TIER.value != "test" or _PER_NEURON.value:
                raise ValueError(
                    "without --data a synthetic entry is scored on its test split only (no --tier, --per_neuron)."
                )
            if _MODEL.value.endswith(".keras") or os.path.isfile(_MODEL.value):
                raise ValueError(
                    f"{_MODEL.value}: --data is needed for a .keras file (only zoo entries carry their truth)."
                )
            facts = zoo.metadata(_MODEL.value)
            config = _synthetic_config(facts)  # Fails fast, before loading, for an entry without a truth.
            model = zoo.load(_MODEL.value)
            scores = score_against_truth(model, facts, _BATCH_SIZE.value)
        except ValueError as error:
            sys.exit(f"error: {error}")
        print(json.dumps({"model": _MODEL.value, "data": f"synthetic ({config.ground_truth}, seed {config.seed})",
                          "tier": "test", **scores}))
        return
    try:
        started = time.perf_counter()
        print(f"reading {_DATA.value} ...", flush=True)
        # The information gain fits its null to the train tier and the model's spread to the validation tier.
        data = load_recording(_DATA.value, tiers=sorted({_TIER.value, "train", "validation"}),
                              nwb_options=nwb_options())
        print(f"  {data.name}: {len(data.indices(_TIER.value))} {_TIER.value} trials, {data.n_neurons} neurons "
              f"({time.perf_counter() - started:.1f} s)", flush=True)
        chosen = _recordings.describe(data)
        if chosen:
            print(chosen, flush=True)
        # A pruned factorized mask is read sparsely: the same predictions, faster (inference_forms.for_inference).
        loaded = zoo.load_any(_MODEL.value)
        scored = session_for(loaded, data.name, _SESSION.value)
        check_fits(scored, data, scored.name if scored is not loaded else None)
        model = inference_forms.for_inference(scored)
        print(f"predicting with {_MODEL.value} ...", flush=True)
        responses, predictions, groups = evaluation.predict_tier(model, data, _TIER.value, _BATCH_SIZE.value,
                                                                 verbose=2)
        scores = evaluation.score_repeats(responses, predictions, groups)
        present = set(np.asarray(data.tiers).tolist())
        if _TIER.value not in ("train", "validation") and {"train", "validation"} <= present:
            scores.information = evaluation.information_gain_of(model, data, responses, predictions, groups,
                                                                _BATCH_SIZE.value)
        else:  # Scoring a tier the spread is fitted on, or without a null, would flatter the model.
            print(f"no info_gain: it needs train and validation tiers besides the scored {_TIER.value!r} tier "
                  f"(tiers present: {sorted(present)}).", flush=True)
        # A model of the animal's state can predict how repeats of one image differ; an image-only one cannot.
        trial_corr = (trial_variability.model_trial_correlation(responses, predictions, groups)
                      if getattr(model, "takes_state", False) else None)
    except (RecordingError, ValueError, FileNotFoundError) as error:
        sys.exit(f"error: {error}")
    per_neuron = {"corr_single": scores.corr_single, "corr_avg": scores.corr_avg, "feve": scores.feve,
                  "oracle": scores.oracle}
    summary = scores.summary()
    if scores.information is not None:
        per_neuron["info_gain"] = scores.information.per_neuron()
    if trial_corr is not None:
        per_neuron["trial_corr"] = trial_corr
        summary["trial_corr"] = float(np.mean(trial_corr))
    if _PER_NEURON.value:
        atomic_files.write_npz(_PER_NEURON.value, **per_neuron)
    session = {"session": scored.name} if scored is not loaded else {}
    print(json.dumps({"model": _MODEL.value, "data": data.name, "tier": _TIER.value, **session, **summary}))

