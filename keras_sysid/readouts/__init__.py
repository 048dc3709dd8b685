"""Readouts: the per-neuron *where* (and how much of each feature).

A readout maps the core's feature maps ``(batch, grid_h, grid_w, channels)``
to one linear drive per neuron ``(batch, n_neurons)``. Each lives in its own
module over :class:`~keras_sysid.readouts.base.Readout`, which states the
contract, and registers itself by its ``type_name``:

- ``factorized``: :class:`FactorizedReadout` (Klindt et al. 2017), spatial
  mask x feature vector per neuron, sparse by an L1 penalty on their product.
- ``fully_connected``: :class:`FullyConnectedReadout` (McIntosh et al. 2016;
  on pixels, an LNP model), a dense weight over every position and channel.
- ``gaussian``: :class:`GaussianReadout` (Lurz et al. 2021), a learned
  position (and spread) per neuron, read by bilinear interpolation.
- ``fixed_mask``: :class:`FixedMaskReadout` (Batty et al. 2017), a fixed
  location per neuron, only the features learned.
- ``gaussian_mask``: :class:`GaussianMaskReadout` (Höfling et al. 2024), a
  learned isotropic Gaussian window (centre and width) per neuron.
- ``pruned_mask`` and ``fixed_point``: :class:`PrunedMaskReadout` and
  :class:`FixedPointReadout`, inference copies of a fitted factorized and
  Gaussian readout (``keras_sysid.inference_forms``).

To add a readout, add a module here with a ``Readout`` subclass that sets
``type_name``: every public module of this package is imported below, so it
is registered, reachable from :func:`get` and ``build_model``, and covered by
the contract tests (``tests/test_layer_contracts.py``).
"""

from __future__ import annotations

from keras_sysid.readouts.base import REGISTRY, NeuronEvidence, Readout
from keras_sysid.registry import import_submodules

import_submodules(__name__, __path__)


def get(spec, **overrides):
    """A readout layer from a layer, a type name, ``{"type": ..., **kwargs}`` or a Keras config.

    Example:
        >>> get({"type": "factorized", "l1": 0.05}, n_neurons=100).n_neurons
        100
    """
    return REGISTRY.get(spec, **overrides)


def registry() -> dict[str, type]:
    """``{type_name: class}`` of every registered readout."""
    return REGISTRY.classes()


# Each registered class by its own name: ``keras_sysid.readouts.FactorizedReadout``.
globals().update({cls.__name__: cls for cls in REGISTRY.classes().values()})

__all__ = ["NeuronEvidence", "Readout", "get", "registry", *sorted(cls.__name__ for cls in REGISTRY.classes().values())]
