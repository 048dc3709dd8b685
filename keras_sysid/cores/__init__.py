"""Cores: the shared *what* of a neural population.

A core maps images ``(batch, height, width, channels)`` to feature maps
``(batch, grid_height, grid_width, channels)`` that every neuron's readout
reads. Each lives in its own module over :class:`~keras_sysid.cores.base.Core`,
which states the contract, and registers itself by its ``type_name``:

- ``stacked_conv2d``: :class:`StackedConv2DCore`, the paper's core.
- ``identity``: :class:`IdentityCore`, the pixels themselves (LNP models).

Any Keras layer with that signature can also be passed as a core. To add one
to the registry, add a module here with a ``Core`` subclass that sets
``type_name``; every public module of this package is imported below.
"""

from __future__ import annotations

from keras_sysid.cores.base import REGISTRY, Core
from keras_sysid.registry import import_submodules

import_submodules(__name__, __path__)


def get(spec, **overrides):
    """A core layer from a layer, a type name, ``{"type": ..., **kwargs}`` or a Keras config."""
    return REGISTRY.get(spec, **overrides)


def registry() -> dict[str, type]:
    """``{type_name: class}`` of every registered core."""
    return REGISTRY.classes()


globals().update({cls.__name__: cls for cls in REGISTRY.classes().values()})

__all__ = ["Core", "get", "registry", *sorted(cls.__name__ for cls in REGISTRY.classes().values())]
