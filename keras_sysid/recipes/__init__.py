"""Recipes: recording(s) + recipe -> a fitted, scored, saved run. The library side of ``keras-sysid fit``.

- :data:`RECIPES`: named recipes as data (:mod:`keras_sysid.recipes.presets`):
  ``klindt2017``, ``lurz2021``, ``mouse_v1_best``; :func:`recording_spec`
  composes one from a core, a readout and state parts by name.
- :func:`fit_recording`: fits a recipe to one or several recordings in a
  locked, resumable run folder and scores it on their test tiers.
- :func:`fit_synthetic`: the same for the built-in synthetic ground truth.
- :func:`build_for_recording`: just the model, adapted and set up from a recording.

Example:
    >>> recording = ks.data.load("static20457-5-9-preproc0.zip")
    >>> results = ks.recipes.fit_recording(recording, ks.recipes.RECIPES["mouse_v1_best"], out="runs/best")
"""

from keras_sysid.recipes.build import build_for_recording, build_for_recordings, needs
from keras_sysid.recipes.fit import fit_jointly, fit_model, fit_recording, run_key
from keras_sysid.recipes.presets import (
    RECIPES,
    FitSettings,
    Recipe,
    SyntheticRunConfig,
    get,
    pretrained_spec,
    recording_spec,
)
from keras_sysid.recipes.synthetic import fit_synthetic, run_synthetic

__all__ = [
    "RECIPES",
    "FitSettings",
    "Recipe",
    "SyntheticRunConfig",
    "build_for_recording",
    "build_for_recordings",
    "fit_jointly",
    "fit_model",
    "fit_recording",
    "fit_synthetic",
    "get",
    "needs",
    "pretrained_spec",
    "recording_spec",
    "run_key",
    "run_synthetic",
]
