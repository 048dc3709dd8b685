"""Inference forms of a fitted model: copies that predict what it predicts, for evaluation and export.

- :func:`with_pruned_readout`: a pruned factorized model whose readout reads
  only the non-zero mask entries (:class:`~keras_sysid.readouts.PrunedMaskReadout`),
  faster on TensorFlow; :func:`for_inference`, what evaluation uses, picks it where it wins.
- :func:`with_fixed_point_readout`: a Gaussian-readout model whose read points
  are fixed at their means and the read's layout precomputed
  (:class:`~keras_sysid.readouts.FixedPointReadout`): gathers and matmuls only,
  which every runtime can express; :func:`for_export`, what export uses, applies
  it to a model or an ensemble's members (export applies it to each session of a
  multi-session model).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_sysid import cloning, readouts
from keras_sysid.models import SystemIdentificationModel


# Above this fraction of non-zero mask entries, the sparse readout is no faster
# than the dense one: on CPU (2 cores, batch 64, mouse V1's 24x52 grid, C=48,
# N=5335) random masks broke even between 0.15 (1.3-1.4x faster) and 0.30
# (0.77-0.9x): tools/benchmark.py --pruned mouse_v1_factorized (docs/benchmarks.md).
PRUNED_READOUT_MAX_DENSITY = 0.2


def _mask_density(readout) -> float:
    """Fraction of a factorized readout's effective mask entries that are non-zero."""
    return float(np.mean(ops.convert_to_numpy(readout.effective_mask()) != 0))


def with_pruned_readout(
    model: SystemIdentificationModel, max_density: float = PRUNED_READOUT_MAX_DENSITY
) -> SystemIdentificationModel:
    """An inference copy of ``model`` whose factorized readout reads only its non-zero mask entries.

    Prune the mask first (``model.readout.prune_mask(0.01)``): the copy
    predicts what ``model`` predicts (to float32 rounding) but skips the zero
    entries, see :class:`~keras_sysid.readouts.PrunedMaskReadout`. The core,
    standardisation, nonlinearity and response scale are copied; ``model``
    is left untouched, and later changes to it do not reach the copy.

    Behaviour channels, shifter, modulator and their statistics are copied too.
    The copy is for prediction: its mask and features are fixed. To fine-tune,
    train ``model`` and convert it again.

    Args:
        model: A :class:`SystemIdentificationModel` with a ``FactorizedReadout``.
        max_density: Refuse a mask with more than this fraction of non-zero
            entries, where the sparse read would not be faster. The default,
            :data:`PRUNED_READOUT_MAX_DENSITY`, is where it stopped winning on CPU.

    Returns:
        A new, uncompiled :class:`SystemIdentificationModel`.

    Raises:
        ValueError: the readout is not factorized, the mask is denser than
            ``max_density`` (prune it first), or the backend has no sparse
            matmul (only TensorFlow has one; elsewhere the copy would be slower).
    """
    readout = model.readout
    if not isinstance(readout, readouts.FactorizedReadout):
        raise ValueError(
            f"with_pruned_readout needs a model with a FactorizedReadout; this model's readout is "
            f"{type(readout).__name__}, which has no spatial mask to prune."
        )
    if keras.backend.backend() != "tensorflow":
        raise ValueError(
            f"with_pruned_readout: the {keras.backend.backend()} backend has no sparse matmul here, so a pruned "
            "readout would be no faster than the dense one; use the TensorFlow backend."
        )
    density = _mask_density(readout)
    if density > max_density:
        raise ValueError(
            f"with_pruned_readout: {density:.1%} of the readout's mask entries are non-zero, more than "
            f"max_density={max_density:.0%}, where the sparse read is no faster than the dense one; prune the "
            "mask first (model.readout.prune_mask(0.01))."
        )
    return _with_readout(model, readouts.PrunedMaskReadout.from_factorized(readout))


def with_fixed_point_readout(model: SystemIdentificationModel) -> SystemIdentificationModel:
    """An inference copy of ``model`` whose Gaussian readout reads at fixed points through a precomputed layout.

    The copy predicts what ``model`` predicts in inference mode (the same
    arithmetic, see :class:`~keras_sysid.readouts.FixedPointReadout`) with
    no sort or search per call, so runtimes without those kernels (OpenVINO)
    run it. Core, standardisation, state parts and response scale are copied.

    Args:
        model: A :class:`SystemIdentificationModel` whose readout reads at one
            point per neuron (``GaussianReadout``, ``CortexGaussianReadout``).

    Returns:
        A new, uncompiled :class:`SystemIdentificationModel`.

    Raises:
        ValueError: the readout does not read at one point per neuron.
    """
    if not isinstance(model.readout, readouts.GaussianReadout):
        raise ValueError(
            "with_fixed_point_readout needs a model with a GaussianReadout (or CortexGaussianReadout); this "
            f"model's readout is {type(model.readout).__name__}."
        )
    return _with_readout(model, readouts.FixedPointReadout.from_point_readout(model.readout))


def for_export(model: keras.Model) -> keras.Model:
    """``model`` in a form every export format can express, predicting the same.

    A Gaussian readout becomes a :class:`~keras_sysid.readouts.FixedPointReadout`
    (:func:`with_fixed_point_readout`); an :class:`~keras_sysid.ensemble.Ensemble`
    gets its members converted. Any other model is returned as it is (export
    converts a multi-session model's sessions one by one).

    Args:
        model: A built Keras model.

    Returns:
        ``model`` itself, or a new inference copy.
    """
    from keras_sysid.ensemble import Ensemble

    if isinstance(model, Ensemble):
        members = [for_export(member) for member in model.members]
        if all(new is old for new, old in zip(members, model.members)):
            return model
        return Ensemble(members, name=model.name)
    if isinstance(model, SystemIdentificationModel) and isinstance(model.readout, readouts.GaussianReadout):
        return with_fixed_point_readout(model)
    return model


def _with_readout(model: SystemIdentificationModel, readout) -> SystemIdentificationModel:
    """A copy of ``model`` (core, standardisation, state parts, response scale) with ``readout`` in place of its own."""
    core_input = (None,) + model.image_shape[:-1] + (
        model.image_shape[-1] + (len(model.behavior_stats["mean"]) if model.behavior_channels else 0),)
    core = cloning.clone(model.core, input_shape=core_input)
    state_parts = {
        name: cloning.clone(layer, input_shape=(None, len(stats["mean"])))
        for name, layer, stats in (("shifter", model.shifter, model.pupil_stats),
                                   ("modulator", model.modulator, model.behavior_stats))
        if layer is not None
    }
    copy = SystemIdentificationModel(
        core,
        readout,
        image_shape=model.image_shape,
        nonlinearity=model.nonlinearity,
        image_mean=model.image_mean,
        image_std=model.image_std,
        behavior_channels=model.behavior_channels,
        behavior_stats=model.behavior_stats,
        pupil_stats=model.pupil_stats,
        name=model.name,
        dtype=model.dtype_policy,
        **state_parts,
    )
    copy.response_scale.assign(ops.convert_to_numpy(model.response_scale))
    return copy


def for_inference(model: keras.Model) -> keras.Model:
    """``model``, or its faster pruned-readout copy where that one predicts the same and wins.

    The copy (:func:`with_pruned_readout`) is used when the backend is
    TensorFlow, the readout is a ``FactorizedReadout`` and at most
    :data:`PRUNED_READOUT_MAX_DENSITY` of its mask entries are non-zero, as in
    the zoo's pruned factorized models (docs/benchmarks.md). Predictions agree
    to float32 rounding either way; use it for evaluation and prediction,
    not for training.

    Args:
        model: Any Keras model.

    Returns:
        ``model`` itself, or a new inference copy.
    """
    readout = getattr(model, "readout", None)
    if keras.backend.backend() != "tensorflow" or not isinstance(readout, readouts.FactorizedReadout):
        return model
    density = _mask_density(readout)
    return with_pruned_readout(model) if density <= PRUNED_READOUT_MAX_DENSITY else model
