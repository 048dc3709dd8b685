r"""Reproduce the paper's comparisons: Table 1 on mouse V1, Fig. 5e on synthetic data.

Progress goes to stdout; tables, JSON, CSV and figures go to ``--out``. Finished
models are kept there and not refitted, so an interrupted run resumes.

Each stored fit carries its run key: the data's content fingerprint (sha256),
the model's preset, the fit settings and the seed. A fit is reused only under
the same key. If ``--out`` holds a fit of another key (other data, settings or
seed), the run stops before fitting anything and says what differs; use
another ``--out``, delete the named folders, or pass ``--overwrite`` to delete
and refit them. Errors exit with status 1 and a one-line cause on stderr.

Examples:

  # All five rivals on real mouse V1 data (about 20 min per CNN on 2 CPU cores).
  keras-sysid reproduce --experiment mouse_v1 \
      --data ../shared/data/mouse_v1_lurz2021/static20457-5-9-preproc0.zip

  # A quick look: two models, few epochs.
  keras-sysid reproduce --experiment mouse_v1 --data DATA.zip \
      --models factorized,lnp --max_epochs 5 --out runs/quick

  # The road to the best mouse V1 model: Lurz core, cortex-predicted positions,
  # behaviour channels, shifter, modulator (each on top of the last), then an
  # ensemble of the best on validation and the factorized readout with a shifter.
  # Test scores are computed once, after every fit. Hours on 2 CPU cores; resumable.
  keras-sysid reproduce --experiment mouse_v1_sota --data DATA.zip

  # Proof that the shifter and modulator work: a synthetic truth with known eye
  # shifts and behaviour gains, fitted with and without them (minutes).
  keras-sysid reproduce --experiment synthetic_modulation

  # Fig. 5e: readouts on the nonlinear ground truth with 4, 8 and 16 cell types.
  keras-sysid reproduce --experiment synthetic_types

  # Many sessions, one core: 4 synthetic sessions of different neurons and images,
  # fitted separately, with a shared core (both interleavings) and pooled (the ceiling).
  keras-sysid reproduce --experiment multisession_synthetic

  # The same on mouse V1: two halves of the neurons with disjoint halves of the
  # training trials, fitted separately and jointly (--models: the variant, default gaussian).
  keras-sysid reproduce --experiment multisession_mouse_v1 --data DATA.zip
"""

import functools
import json
import sys

from absl import app, flags

from keras_sysid.cli import _backend
from keras_sysid.data import RecordingError
from keras_sysid.experiments import comparison, insilico_checks, modulation, mouse_v1_sota, multisession
from keras_sysid.experiments.presets import (
    RIVALS,
    SOTA_VARIANTS,
    SYNTHETIC_READOUTS,
    FitSettings,
    SyntheticTypesSettings,
)
from keras_sysid.resume import BackupError

# Its documentation page, linked from --help (keras_sysid.cli.main.docs_link).
DOCS_PAGE = "results/"

_EXPERIMENT = flags.DEFINE_enum(
    "experiment", None,
    ["mouse_v1", "mouse_v1_sota", "synthetic_types", "synthetic_modulation", "insilico_truth", "insilico_mouse_v1",
     "multisession_synthetic", "multisession_mouse_v1"],
    "Which comparison.",
    required=True,
)
_DATA = flags.DEFINE_string("data", None, "mouse_v1: a static*-preproc0 zip file or folder.")
_OUT = flags.DEFINE_string("out", None, "Output folder (default runs/<experiment>).")
_MODELS = flags.DEFINE_list(
    "models", None,
    f"mouse_v1: rivals to fit, of {list(RIVALS)}; mouse_v1_sota: variants, of {list(SOTA_VARIANTS)}; "
    f"synthetic_types: readouts, of {list(SYNTHETIC_READOUTS)}; insilico_mouse_v1: the model (a zoo name or "
    "path; default mouse_v1_gaussian). Default: all.",
)
_ENSEMBLE_SIZE = flags.DEFINE_integer("ensemble_size", 5, "mouse_v1_sota: members of the ensemble of the best variant.")
_MAX_EPOCHS = flags.DEFINE_integer("max_epochs", None, "Upper bound on epochs per model (default per experiment).")
_N_TYPES = flags.DEFINE_list("n_types", ["4", "8", "16"], "synthetic_types: numbers of cell types.")
_N_TRAIN = flags.DEFINE_integer("n_train", SyntheticTypesSettings.n_train, "synthetic_types: training images.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", SyntheticTypesSettings.image_size, "synthetic_types: image side.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of initialisation and shuffling.")
_OVERWRITE = flags.DEFINE_bool(
    "overwrite", False,
    "Delete and refit stored fits in --out whose key (data fingerprint, preset, settings, seed) is not this "
    "run's. Default: stop with an error naming them. Fits of this run's key are reused either way.",
)


def main(argv):
    del argv
    _backend.check()
    out = _OUT.value or f"runs/{_EXPERIMENT.value}"
    if _EXPERIMENT.value in ("mouse_v1", "mouse_v1_sota"):
        if not _DATA.value:
            raise app.UsageError(f"--experiment {_EXPERIMENT.value} needs --data (a static*-preproc0 zip or folder).")
        settings = FitSettings(seed=_SEED.value)
        if _MAX_EPOCHS.value:
            settings.max_epochs = _MAX_EPOCHS.value
        if _EXPERIMENT.value == "mouse_v1":
            run = functools.partial(
                comparison.run_mouse_v1, _DATA.value, out, models=_MODELS.value or tuple(RIVALS), settings=settings,
                overwrite=_OVERWRITE.value,
            )
            columns = comparison.TABLE_COLUMNS
        else:
            run = functools.partial(
                mouse_v1_sota.run_mouse_v1_sota, _DATA.value, out, variants=_MODELS.value or tuple(SOTA_VARIANTS),
                settings=settings, ensemble_size=_ENSEMBLE_SIZE.value, overwrite=_OVERWRITE.value,
            )
            columns = mouse_v1_sota.TABLE_COLUMNS
    elif _EXPERIMENT.value == "insilico_truth":
        summaries = [insilico_checks.against_truth(truth, out=f"{out}/{truth}") for truth in ("dog", "cnn")]
        print(json.dumps(summaries, indent=2))
        print(f"\nwritten to {out}/")
        return
    elif _EXPERIMENT.value == "insilico_mouse_v1":
        if not _DATA.value:
            raise app.UsageError("--experiment insilico_mouse_v1 needs --data (a static*-preproc0 zip or folder).")
        model = (_MODELS.value or ["mouse_v1_gaussian"])[0]
        print(json.dumps(insilico_checks.mouse_v1(model, _DATA.value, out), indent=2))
        print(f"\nwritten to {out}/")
        return
    elif _EXPERIMENT.value == "multisession_synthetic":
        config = multisession.MultiSessionSyntheticConfig(seed=_SEED.value)
        if _MAX_EPOCHS.value:
            config.max_epochs = _MAX_EPOCHS.value
        run = functools.partial(multisession.run_multisession_synthetic, config, out=out, verbose=2)
        columns = multisession.SYNTHETIC_COLUMNS
    elif _EXPERIMENT.value == "multisession_mouse_v1":
        if not _DATA.value:
            raise app.UsageError("--experiment multisession_mouse_v1 needs --data (a static*-preproc0 zip or folder).")
        settings = FitSettings(seed=_SEED.value)
        if _MAX_EPOCHS.value:
            settings.max_epochs = _MAX_EPOCHS.value
        variant = (_MODELS.value or ["gaussian"])[0]
        run = functools.partial(multisession.run_multisession_mouse_v1, _DATA.value, out, variant=variant,
                                settings=settings)
        columns = multisession.MOUSE_V1_COLUMNS
    elif _EXPERIMENT.value == "synthetic_modulation":
        settings = modulation.ModulationProofSettings(seed=_SEED.value)
        if _MAX_EPOCHS.value:
            settings.max_epochs = _MAX_EPOCHS.value
        result = modulation.run_modulation_proof(out, settings)
        print(json.dumps({key: result[key] for key in ("modulated", "unmodulated")}, indent=2))
        print(f"\nwritten to {out}/")
        return
    else:
        settings = SyntheticTypesSettings(
            n_types=tuple(int(n) for n in _N_TYPES.value), n_train=_N_TRAIN.value, image_size=_IMAGE_SIZE.value,
            seed=_SEED.value,
        )
        if _MAX_EPOCHS.value:
            settings.max_epochs = _MAX_EPOCHS.value
        run = functools.partial(
            comparison.run_synthetic_types, out, readouts=_MODELS.value or tuple(SYNTHETIC_READOUTS),
            settings=settings, overwrite=_OVERWRITE.value,
        )
        columns = ("n_types", "n_neurons", "readout", "fev", "epochs", "seconds")
    try:
        rows = run()
    except (RecordingError, comparison.StoredRunMismatch, BackupError) as error:
        sys.exit(f"error: {error}")
    print()
    print(comparison.format_table(rows, columns))
    print(f"\nwritten to {out}/")
    print(json.dumps([{key: row[key] for key in columns if key in row} for row in rows]))


