"""The built-in synthetic ground truths as Keras models, usable as simulators.

:func:`groundtruth_model` turns the true generating model of a
:class:`~keras_sysid.data.SyntheticPopulation` into a
:class:`~keras_sysid.models.SystemIdentificationModel` made of standard,
serialisable layers, whose ``predict`` gives the noise-free rates:

- ``dog``: no core (pixels) and a fully connected readout whose weights are
  the cells' DoG filters.
- ``cnn``: a ``Sequential`` core, 9x9 convolution with filters ``W`` and
  ``-W`` -> ReLU -> 1x1 mixing (``relu(x) + relu(-x) = |x|``, so this is the
  truth's full-wave rectification), and a Gaussian readout whose mean
  positions sit exactly on each cell's grid location (a bilinear read there
  is exact) with features one-hot at its type: ``N * (C + 4)`` numbers
  instead of a ``N * H * W`` mask.

Both end in the truth's output stage, ``softplus(gain * z + offset)``.
"""

from __future__ import annotations

import keras
import numpy as np

from keras_sysid.models import SystemIdentificationModel
from keras_sysid.readouts import FullyConnectedReadout, GaussianReadout


def _dog_model(truth, image_shape, name):
    n_neurons = len(truth.filters)
    stage = truth.output
    readout = FullyConnectedReadout(n_neurons, name="readout")
    model = SystemIdentificationModel(keras.layers.Identity(name="core"), readout, image_shape, name=name)
    scale = stage.gain / np.asarray(stage.drive_std, "float64")
    kernel = truth.filters.reshape(n_neurons, -1).T * scale  # (H * W, N)
    readout.kernel.assign(kernel.astype("float32"))
    readout.bias.assign((stage.offset - scale * np.asarray(stage.drive_mean)).astype("float32"))
    return model


def _cnn_model(truth, image_shape, name):
    size, _, n_filters = truth.layer1.shape
    n_types = truth.mixing.shape[1]
    n_neurons = len(truth.locations)
    core = keras.Sequential(
        [
            keras.layers.Conv2D(2 * n_filters, size, padding="valid", use_bias=False, name="layer1"),
            keras.layers.ReLU(name="rectify"),
            keras.layers.Conv2D(n_types, 1, use_bias=False, name="mixing"),
        ],
        name="core",
    )
    readout = GaussianReadout(n_neurons, l1=0.0, name="readout")
    model = SystemIdentificationModel(core, readout, image_shape, name=name)
    core.get_layer("layer1").kernel.assign(np.concatenate([truth.layer1, -truth.layer1], axis=-1)[:, :, None, :])
    core.get_layer("mixing").kernel.assign(np.concatenate([truth.mixing, truth.mixing], axis=0)[None, None])
    grid = np.asarray(model.grid_shape, "float64")
    on_grid = truth.locations.astype("float64") - size // 2
    readout.mu.assign((2.0 * on_grid / (grid - 1.0) - 1.0).astype("float32"))
    stage = truth.output
    scale = stage.gain / np.asarray(stage.drive_std, "float64") * np.ones(n_neurons)
    features = np.zeros((n_types, n_neurons), "float32")
    features[truth.types, np.arange(n_neurons)] = scale
    readout.features.assign(features)
    readout.bias.assign((stage.offset - scale * np.asarray(stage.drive_mean)).astype("float32"))
    return model


def groundtruth_model(population, name: str | None = None) -> SystemIdentificationModel:
    """The population's true generating model as a Keras model.

    Args:
        population: A :class:`~keras_sysid.data.SyntheticPopulation`.
        name: Model name (default ``synthetic_<ground truth>_groundtruth``).

    Returns:
        A model whose ``predict(images)`` equals
        ``population.model.respond(images)`` (the noise-free rates), ``(n, N)``.

    Example:
        >>> pop = make_population("dog", n_neurons=100)
        >>> simulator = groundtruth_model(pop)
        >>> simulator.predict(pop.test.images).shape
        (2048, 100)
    """
    name = name or f"synthetic_{population.ground_truth}_groundtruth"
    builders = {"dog": _dog_model, "cnn": _cnn_model}
    return builders[population.ground_truth](population.model, population.image_shape, name)
