"""Population models: a core (*what*) composed with a readout (*where*).

:class:`SystemIdentificationModel` is ``image -> standardise -> core ->
readout -> output nonlinearity``; :func:`build_model` makes one from a small
config, e.g. the paper's model::

    model = build_model(n_neurons=1000, image_shape=(48, 48),
                        core={"type": "stacked_conv2d"},
                        readout={"type": "factorized", "l1": 0.01})
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_sysid import behavior, cores, normalization, positions, readouts, validation
from keras_sysid.normalization import variable_stats  # noqa: F401  (public here since build_model takes its output)


def _softplus(x):
    """``log(1 + exp(x))`` as ``relu(x) + softplus(-|x|)``: the same function, but no runtime's softplus ever
    sees a large argument (LiteRT computes softplus as written, and returned inf for drives above 88)."""
    return ops.relu(x) + ops.softplus(-ops.abs(x))


def _elu_plus_one(x):
    return ops.elu(x) + 1.0


def _inverse_softplus(rate: np.ndarray) -> np.ndarray:
    return rate + np.log(-np.expm1(-rate))


def _inverse_elu_plus_one(rate: np.ndarray) -> np.ndarray:
    return np.where(rate >= 1.0, rate - 1.0, np.log(rate))


# name -> (forward, inverse on numpy rates); the inverse initialises the readout
# bias so that an untrained model already predicts every neuron's mean rate.
OUTPUT_NONLINEARITIES = {
    "softplus": (_softplus, _inverse_softplus),
    "elu_plus_one": (_elu_plus_one, _inverse_elu_plus_one),
}


@keras.saving.register_keras_serializable(package="keras_sysid")
class SystemIdentificationModel(validation.CheckedArraysMixin, keras.Model):
    """Predicts the responses of a neural population to images.

    ``rates = response_scale * nonlinearity(readout(core((images - image_mean)
    / image_std)))``. Standardisation and the per-neuron ``response_scale``
    (a non-trainable ``(N,)`` weight, ones by default) live inside the model,
    so it takes images and predicts responses in the data's own units, and a
    saved model needs no side files.

    Optionally the model also takes the animal's state, each part switched on
    by its argument (the SENSORIUM+ baseline's parts):

    - ``behavior_channels``: the standardised behaviour variables become
      constant extra input channels of the core;
    - ``shifter``: a :class:`~keras_sysid.behavior.Shifter` maps the
      standardised pupil centre to a per-trial shift of every neuron's read
      position (:func:`~keras_sysid.behavior.translate_feature_maps`);
    - ``modulator``: a :class:`~keras_sysid.behavior.GainModulator` maps the
      standardised behaviour to a positive gain on each neuron's rate.

    Such a model takes a dict ``{"images", "behavior", "pupil_center"}`` (the
    keys of :attr:`input_names`); an image-only model takes images, or a dict
    whose other entries it ignores. Behaviour and pupil centre are
    standardised inside the model with train-tier statistics given at
    construction, so it takes them in the data's units.

    ``fit``, ``evaluate`` and ``predict`` check array inputs first (shape,
    dtype, NaN/inf, neuron count, missing behaviour) and raise a
    ``ValueError`` naming the problem.

    Args:
        core: Any layer mapping ``(batch, H, W, C)`` images to feature maps.
        readout: A layer mapping feature maps to ``(batch, n_neurons)`` drives.
        image_shape: ``(H, W)`` or ``(H, W, C)`` of the input images (``C``
            defaults to 1). The model is built for it at construction.
        nonlinearity: ``"softplus"`` (the paper's) or ``"elu_plus_one"``.
        image_mean: Subtracted from the images before the core.
        image_std: Images are divided by it after the mean is subtracted.
        behavior_channels: Feed the behaviour to the core as extra channels.
        shifter: A layer ``(batch, n_pupil) -> (batch, 2)`` shift in grid
            cells (a :class:`~keras_sysid.behavior.Shifter`), or ``None``.
        modulator: A layer ``(batch, n_behavior) -> (batch, N)`` positive
            gains (a :class:`~keras_sysid.behavior.GainModulator`), or ``None``.
        behavior_stats: ``{"mean": [...], "std": [...]}`` of the behaviour
            variables on the train tier; needed with ``behavior_channels`` or
            a ``modulator``.
        pupil_stats: The same for the pupil centre; needed with a ``shifter``.

    Input shape:
        ``(batch, H, W, C)`` images, float; or a dict with ``"images"`` and,
        as the model needs them, ``"behavior"`` ``(batch, n_behavior)`` and
        ``"pupil_center"`` ``(batch, n_pupil)``.

    Output shape:
        ``(batch, n_neurons)`` non-negative predicted responses.

    Example:
        >>> model = build_model(n_neurons=50, image_shape=(36, 64))
        >>> model.compile(optimizer="adam", loss=PoissonLoss())
        >>> model.predict(np.zeros((4, 36, 64, 1), "float32")).shape
        (4, 50)
    """

    def __init__(
        self,
        core: keras.layers.Layer,
        readout: keras.layers.Layer,
        image_shape,
        nonlinearity: str = "softplus",
        image_mean: float = 0.0,
        image_std: float = 1.0,
        behavior_channels: bool = False,
        shifter: keras.layers.Layer | None = None,
        modulator: keras.layers.Layer | None = None,
        behavior_stats: dict | None = None,
        pupil_stats: dict | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if nonlinearity not in OUTPUT_NONLINEARITIES:
            raise ValueError(
                f"Unknown output nonlinearity {nonlinearity!r}; choose one of {sorted(OUTPUT_NONLINEARITIES)}."
            )
        image_shape = tuple(int(d) for d in image_shape)
        if len(image_shape) == 2:
            image_shape = image_shape + (1,)
        if len(image_shape) != 3 or min(image_shape) < 1:
            raise ValueError(f"image_shape must be (height, width) or (height, width, channels); got {image_shape}.")
        if not np.isfinite(image_std) or image_std <= 0:
            raise ValueError(f"image_std must be a positive finite number; got {image_std}.")
        self.core = core
        self.readout = readout
        self.image_shape = image_shape
        self.nonlinearity = nonlinearity
        self.image_mean = float(image_mean)
        self.image_std = float(image_std)
        self._nonlinearity_fn = OUTPUT_NONLINEARITIES[nonlinearity][0]
        self.behavior_channels = bool(behavior_channels)
        self.shifter = shifter
        self.modulator = modulator
        uses_behavior = self.behavior_channels or modulator is not None
        self.behavior_stats = _checked_stats(behavior_stats, "behavior_stats", uses_behavior,
                                             "behavior_channels or a modulator")
        self.pupil_stats = _checked_stats(pupil_stats, "pupil_stats", shifter is not None, "a shifter")
        self.input_names = ("images",) + (("behavior",) if uses_behavior else ()) + (
            ("pupil_center",) if shifter is not None else ())
        # Built for the input it takes: Keras records the shapes (a SavedModel's default signature uses them).
        shapes = {name: (None,) + shape for name, shape in self.input_shapes().items()}
        self.build(shapes if self.takes_state else shapes["images"])

    @property
    def n_neurons(self) -> int:
        return int(self.readout.n_neurons)

    @property
    def takes_state(self) -> bool:
        """Whether the model needs more than images (a dict input)."""
        return len(self.input_names) > 1

    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        """``{name: shape without the batch axis}`` for each of :attr:`input_names`, in order.

        ``{"images": (H, W, C)}`` for an image-only model; a model that takes
        the animal's state adds ``"behavior": (n_behavior,)`` and/or
        ``"pupil_center": (n_pupil,)``, sized by ``behavior_stats`` and
        ``pupil_stats``. :func:`keras_sysid.export.export_saved_model` makes
        its serving signature from it.
        """
        sizes = {"behavior": self.behavior_stats, "pupil_center": self.pupil_stats}
        return {"images": tuple(self.image_shape),
                **{name: (len(sizes[name]["mean"]),) for name in self.input_names[1:]}}

    def build(self, input_shape):
        if isinstance(input_shape, dict):
            input_shape = input_shape["images"]
        self._check_image_shape(tuple(input_shape))
        core_input = tuple(input_shape)
        if self.behavior_channels:
            core_input = core_input[:-1] + (core_input[-1] + len(self.behavior_stats["mean"]),)
        if not self.core.built:
            self.core.build(core_input)
        grid_shape = tuple(self.core.compute_output_shape(core_input))
        if not self.readout.built:
            self.readout.build(grid_shape)
        if self.shifter is not None and not self.shifter.built:
            self.shifter.build((None, len(self.pupil_stats["mean"])))
        if self.modulator is not None and not self.modulator.built:
            self.modulator.build((None, len(self.behavior_stats["mean"])))
        self.grid_shape = grid_shape[1:3]
        self.response_scale = self.add_weight(
            shape=(self.n_neurons,), initializer="ones", trainable=False, name="response_scale"
        )
        self.built = True

    def _check_image_shape(self, shape):
        if len(shape) != 4 or tuple(shape[1:]) != self.image_shape:
            raise ValueError(
                f"Images must have shape (batch, {', '.join(map(str, self.image_shape))}); got {shape}."
            )

    def _split_inputs(self, inputs):
        """``(images, standardised behaviour or None, standardised pupil centre or None)``."""
        if isinstance(inputs, dict):
            missing = [name for name in self.input_names if name not in inputs]
            if missing:
                raise ValueError(self._missing_inputs_message(missing, list(inputs)))
            images = inputs["images"]
        else:
            if self.takes_state:
                raise ValueError(self._missing_inputs_message(list(self.input_names[1:]), ["images"]))
            images = inputs

        def standardised(name, stats):
            if name not in self.input_names:
                return None
            values = ops.cast(inputs[name], "float32")
            mean = ops.convert_to_tensor(np.asarray(stats["mean"], "float32"))
            std = ops.convert_to_tensor(np.asarray(stats["std"], "float32"))
            return (values - mean) / std

        return images, standardised("behavior", self.behavior_stats), standardised("pupil_center", self.pupil_stats)

    def _missing_inputs_message(self, missing, given) -> str:
        return (
            f"This model needs {', '.join(repr(m) for m in missing)} besides the images: it takes a dict with keys "
            f"{list(self.input_names)}; got {given}. Give a data set that has them (e.g. data/behavior/ and "
            "data/pupil_center/ of a static*-preproc0 tree)."
        )

    def call(self, inputs, training=False):
        images, behavior_values, pupil = self._split_inputs(inputs)
        self._check_image_shape(tuple(images.shape))
        x = (ops.cast(images, self.compute_dtype) - self.image_mean) / self.image_std
        if self.behavior_channels:
            # Constant maps: every pixel of channel k holds behaviour variable k.
            planes = ops.ones_like(x[..., :1]) * ops.cast(behavior_values, x.dtype)[:, None, None, :]
            x = ops.concatenate([x, planes], axis=-1)
        features = self.core(x, training=training)
        if self.shifter is not None:
            features = behavior.translate_feature_maps(features, self.shifter(pupil))
        drive = self.readout(features, training=training)
        rates = self._nonlinearity_fn(drive) * ops.cast(self.response_scale, drive.dtype)
        if self.modulator is not None:
            rates = rates * ops.cast(self.modulator(behavior_values), rates.dtype)
        return rates

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.n_neurons)

    # -- input checks at the array boundary ------------------------------------

    def _check_arrays(self, x, y=None, what="data"):
        if isinstance(x, dict) or self.takes_state:
            n_images = self._check_input_dict(x, what)
        else:
            n_images = validation.check_images(x, self.image_shape, name=f"{what} images")
        validation.warn_if_off_scale(x["images"] if isinstance(x, dict) and "images" in x else x,
                                     self.image_mean, self.image_std, name=f"{what} images")
        if y is not None:
            validation.check_responses(y, self.n_neurons, n_images, name=f"{what} responses")

    def _check_input_dict(self, x, what) -> int | None:
        if not isinstance(x, dict):
            if validation.is_array_like(x):
                raise ValueError(self._missing_inputs_message(list(self.input_names[1:]), ["images"]))
            return None  # a dataset or generator: its pipeline checked it
        missing = [name for name in self.input_names if name not in x]
        if missing:
            raise ValueError(self._missing_inputs_message(missing, list(x)))
        n_images = validation.check_images(x["images"], self.image_shape, name=f"{what} images")
        shapes = self.input_shapes()
        for name in self.input_names[1:]:
            validation.check_trial_variables(x[name], shapes[name][0], n_images, name=f"{what} {name}")
        return n_images

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The compiled loss on responses divided by :attr:`response_scale`, plus the layers' penalties.

        The model predicts each neuron in the data's units; the loss compares
        prediction and data in units of each neuron's scale, so that, as in
        Lurz et al. (2021), neurons whose responses are orders of magnitude
        larger do not rule the fit. With the default scale (ones) this is the
        plain compiled loss.
        """
        if y is not None and y_pred is not None:
            # In float32, as the compiled loss computes: bfloat16 would round the targets.
            scale = ops.cast(self.response_scale, "float32")
            y, y_pred = ops.cast(y, "float32") / scale, ops.cast(y_pred, "float32") / scale
        return super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)

    # -- science helpers ------------------------------------------------------

    def adapt(self, images, responses=None, behavior=None, pupil_center=None, neurons=None) -> "SystemIdentificationModel":
        """Learns the model's normalisation from training data (as Keras' preprocessing layers ``adapt``).

        Sets the image mean and std used to standardise the input; with
        ``responses``, each neuron's response scale
        (:func:`keras_sysid.normalization.response_scale`, so the loss weighs
        neurons alike and predictions come out in the data's units) and the
        readout bias, so the untrained model predicts every neuron's mean
        response; with ``behavior`` / ``pupil_center``, their statistics; last,
        the readout's ``setup_from_data``. Call it on the training split only.

        Args:
            images: ``(T, *image_shape)`` training images, in any units, or
                the dict of inputs ``{"images", "behavior", "pupil_center"}``.
            responses: ``(T, n_neurons)`` training responses, in the data's units.
            behavior: ``(T, n_behavior)``, for a model with behaviour inputs.
            pupil_center: ``(T, n_pupil)``, for a model with a shifter.
            neurons: The neurons' metadata ``{key: (N, ...)}``, for a readout that reads it.

        Returns:
            The model itself.

        Raises:
            ValueError: bad arrays (shape, trial or neuron count, NaN/inf, constant
                images, responses a Poisson loss cannot model), or state it does not take.

        Example:
            >>> model = ks.build_model(n_neurons=y.shape[1], image_shape=x.shape[1:]).adapt(x, y)
        """
        if isinstance(images, dict):  # the model's dict of inputs, as fit takes it
            behavior = images.get("behavior") if behavior is None else behavior
            pupil_center = images.get("pupil_center") if pupil_center is None else pupil_center
            images = images.get("images")
        if not validation.is_array_like(images):
            raise ValueError(f"adapt needs the training images as an array (T, {', '.join(map(str, self.image_shape))}) "
                             f"or a dict with 'images'; got {type(images).__name__}.")
        n_images = validation.check_images(images, self.image_shape, name="adapt images")
        if responses is not None:
            validation.check_responses(responses, self.n_neurons, n_images, name="adapt responses")
            validation.check_poisson_targets(responses, "adapt responses")
        image_mean, image_std = normalization.image_statistics(images)
        stats = {}
        for name, values, sizes in (("behavior", behavior, self.behavior_stats),
                                    ("pupil_center", pupil_center, self.pupil_stats)):
            if values is None:
                continue
            if name not in self.input_names:
                raise ValueError(f"adapt: this model does not take {name!r} (its inputs: {list(self.input_names)}).")
            validation.check_trial_variables(values, len(sizes["mean"]), n_images, name=f"adapt {name}")
            stats[name] = normalization.variable_stats(values)
        self.image_mean, self.image_std = image_mean, image_std
        self.behavior_stats = stats.get("behavior", self.behavior_stats)
        self.pupil_stats = stats.get("pupil_center", self.pupil_stats)
        if responses is not None:
            responses = np.asarray(responses)
            self.set_response_scale(normalization.response_scale(responses))
            self.set_mean_responses(responses.mean(axis=0, dtype="float64"))
        # Compiled steps hold the old statistics as constants: trace them again.
        self.train_function = self.test_function = self.predict_function = None
        self.readout.setup_from_data(readouts.NeuronEvidence.of(self, images, responses, neurons, behavior))
        return self

    def set_mean_responses(self, mean_responses) -> None:
        """Sets the readout bias so that the model predicts these mean rates.

        Args:
            mean_responses: ``(n_neurons,)`` mean training response per neuron,
                in the units the model predicts (the data's units once a
                response scale is set: the bias is set for ``mean / scale``).
        """
        mean_responses = np.asarray(mean_responses, dtype="float64")
        if mean_responses.shape != (self.n_neurons,):
            raise ValueError(
                f"mean_responses must have shape ({self.n_neurons},), one per neuron; got {mean_responses.shape}."
            )
        if not np.all(np.isfinite(mean_responses)):
            raise ValueError("mean_responses contains NaN or inf.")
        # Rates at or below zero have no preimage; a small floor keeps the bias finite.
        mean_responses = mean_responses / ops.convert_to_numpy(self.response_scale.value).astype("float64")
        floor = max(1e-3, 1e-3 * float(np.mean(np.abs(mean_responses))))
        inverse = OUTPUT_NONLINEARITIES[self.nonlinearity][1]
        bias = inverse(np.maximum(mean_responses, floor))
        self.readout.bias.assign(bias.astype(self.readout.bias.dtype))

    def set_response_scale(self, scale) -> None:
        """Sets the per-neuron factor that maps the model's output to data units.

        A model trained on responses divided by ``scale`` (see
        :meth:`keras_sysid.data.Recording.response_scale`) predicts the
        data's own units once this is set to the same ``scale``.

        Args:
            scale: ``(n_neurons,)`` positive factors.
        """
        scale = np.asarray(scale, dtype="float64")
        if scale.shape != (self.n_neurons,):
            raise ValueError(f"response scale must have shape ({self.n_neurons},), one per neuron; got {scale.shape}.")
        if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
            raise ValueError("response scale must be positive and finite for every neuron.")
        self.response_scale.assign(scale.astype(self.response_scale.dtype))

    def feature_maps(self, images, batch_size: int = 256, behavior=None) -> np.ndarray:
        """The core's output for raw images, in inference mode (before any shifter).

        Args:
            images: ``(T, *image_shape)`` in the data's units.
            batch_size: Images per forward pass.
            behavior: ``(T, n_behavior)`` in the data's units; needed (only)
                when the core takes behaviour channels.

        Returns:
            ``(T, grid_height, grid_width, channels)`` float32.
        """
        n_images = validation.check_images(images, self.image_shape, name="feature-map images")
        if self.behavior_channels:
            if behavior is None:
                raise ValueError("This model's core takes behaviour channels: pass feature_maps(images, behavior=...).")
            validation.check_trial_variables(behavior, len(self.behavior_stats["mean"]), n_images, name="behavior")
            standardised = (np.asarray(behavior, "float64") - self.behavior_stats["mean"]) / self.behavior_stats["std"]
        images = np.asarray(images, dtype="float32")
        chunks = []
        for start in range(0, len(images), batch_size):
            x = (images[start:start + batch_size] - self.image_mean) / self.image_std
            if self.behavior_channels:
                planes = standardised[start:start + batch_size, None, None, :] * np.ones(x.shape[:3] + (1,))
                x = np.concatenate([x, planes.astype("float32")], axis=-1)
            chunks.append(keras.ops.convert_to_numpy(self.core(x, training=False)))
        return np.concatenate(chunks).astype("float32")

    def _image_core(self):
        """The core as a function of standardised images alone (behaviour at its train mean)."""
        if not self.behavior_channels:
            return self.core
        n_behavior = len(self.behavior_stats["mean"])

        def core(x, training=False):
            # A standardised behaviour variable at its mean is 0.
            return self.core(ops.concatenate([x, ops.zeros(tuple(x.shape[:-1]) + (n_behavior,), x.dtype)], -1),
                             training=training)

        return core

    def _grid_offset(self) -> np.ndarray:
        # Unit stride, symmetric cropping: grid cell i is centred on image pixel i + offset.
        return (np.asarray(self.image_shape[:2]) - np.asarray(self.grid_shape)) / 2.0

    def pixels_to_grid(self, pixel_positions) -> np.ndarray:
        """Maps ``(N, 2)`` (row, column) image pixels to core grid cells, clipped into the grid."""
        on_grid = np.asarray(pixel_positions, dtype="float64") - self._grid_offset()
        return np.clip(on_grid, 0.0, np.asarray(self.grid_shape) - 1.0)

    def place_neurons(self, pixel_positions, **kwargs) -> None:
        """Puts (or starts) each neuron's readout at an image position.

        Args:
            pixel_positions: ``(N, 2)`` (row, column) in image pixels, e.g.
                from :func:`keras_sysid.positions.envelope_positions`; mapped
                to the core's grid with :meth:`pixels_to_grid`.
            **kwargs: Passed to the readout's ``place_at`` (e.g. ``sigma`` of
                a factorized readout's starting bump).

        Raises:
            NotImplementedError: the readout has no positions (fully connected).
        """
        self.readout.place_at(self.pixels_to_grid(pixel_positions), **kwargs)

    def rf_positions(self) -> np.ndarray:
        """Each neuron's learned receptive-field centre in image pixels.

        The readout's peak on the grid, mapped to pixels (unit stride,
        symmetric cropping: cell ``i`` of a grid ``k`` pixels smaller than the
        image is centred on pixel ``i + k / 2``), plus where the channels the
        neuron reads actually look (:func:`~keras_sysid.positions.channel_rf_offsets`),
        weighted by how much it reads each.

        Returns:
            ``(n_neurons, 2)`` float (row, column) positions.
        """
        try:
            on_grid = self.readout.rf_positions()
            channel_weights = self.readout.channel_weights()  # (C, N), non-negative
        except (AttributeError, NotImplementedError) as error:
            raise ValueError(
                f"{type(self.readout).__name__} has no notion of receptive-field position "
                f"(it needs rf_positions() and channel_weights()): {error}"
            ) from None
        channel_offsets = positions.channel_rf_offsets(self._image_core(), self.image_shape)  # (C, 2)
        total = channel_weights.sum(axis=0)
        shift = channel_weights.T @ channel_offsets / np.where(total > 0, total, 1.0)[:, None]
        return on_grid + self._grid_offset() + shift

    def get_config(self):
        config = {
            "name": self.name,
            "core": keras.saving.serialize_keras_object(self.core),
            "readout": keras.saving.serialize_keras_object(self.readout),
            "image_shape": list(self.image_shape),
            "nonlinearity": self.nonlinearity,
            "image_mean": self.image_mean,
            "image_std": self.image_std,
        }
        # Written only when used, so image-only models keep today's config files.
        if self.behavior_channels:
            config["behavior_channels"] = True
        for name in ("shifter", "modulator"):
            if getattr(self, name) is not None:
                config[name] = keras.saving.serialize_keras_object(getattr(self, name))
        for name in ("behavior_stats", "pupil_stats"):
            if getattr(self, name) is not None:
                config[name] = getattr(self, name)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for name in ("core", "readout", "shifter", "modulator"):
            # A layer object is kept as given: a MultiSessionModel passes its shared core.
            if config.get(name) is not None and not isinstance(config[name], keras.layers.Layer):
                config[name] = keras.saving.deserialize_keras_object(config[name])
        return cls(**config)


def _checked_stats(stats, name: str, needed: bool, needed_by: str) -> dict | None:
    """``{"mean": [...], "std": [...]}`` as float lists, or a ``ValueError`` naming the problem."""
    if stats is None:
        if needed:
            raise ValueError(f"A model with {needed_by} needs {name} ({{'mean': [...], 'std': [...]}} of the train tier).")
        return None
    try:
        mean = np.asarray(stats["mean"], dtype="float64").reshape(-1)
        std = np.asarray(stats["std"], dtype="float64").reshape(-1)
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{name} must be {{'mean': [...], 'std': [...]}}; got {stats!r}.") from None
    if mean.shape != std.shape or mean.size == 0:
        raise ValueError(f"{name}: 'mean' and 'std' must be non-empty and of equal length; got {mean.size} and {std.size}.")
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std)) and np.all(std > 0)):
        raise ValueError(f"{name}: 'mean' must be finite and 'std' positive and finite; got {stats!r}.")
    return {"mean": mean.tolist(), "std": std.tolist()}


def build_model(
    n_neurons: int,
    image_shape,
    core=None,
    readout=None,
    nonlinearity: str = "softplus",
    image_mean: float = 0.0,
    image_std: float = 1.0,
    mean_responses=None,
    name: str = "sysid_model",
    behavior_channels: bool = False,
    shifter=None,
    modulator=None,
    behavior_stats: dict | None = None,
    pupil_stats: dict | None = None,
) -> SystemIdentificationModel:
    """Builds a core + readout model from a small config.

    Args:
        n_neurons: Number of neurons to predict.
        image_shape: ``(H, W)`` or ``(H, W, C)``.
        core: A Keras layer, a type name, or a dict ``{"type": name, **kwargs}``
            with ``type`` a registered core (``keras_sysid.cores.registry()``).
            Default: ``StackedConv2DCore``'s defaults.
        readout: A Keras layer, a type name, or ``{"type": name, **kwargs}``
            with ``type`` a registered readout (``keras_sysid.readouts.registry()``;
            ``n_neurons`` is filled in). Default: factorized.
        nonlinearity: Output nonlinearity, a key of :data:`OUTPUT_NONLINEARITIES`.
        image_mean: Image mean, subtracted inside the model.
        image_std: Image standard deviation, divided out inside the model.
        mean_responses: Optional ``(n_neurons,)`` mean training responses; the
            readout bias is set so the untrained model predicts them.
        name: Model name.
        behavior_channels: Feed the behaviour to the core as extra channels.
        shifter: ``None``, a layer, or a dict of :class:`~keras_sysid.behavior.Shifter`
            arguments (``{}`` for its defaults).
        modulator: ``None``, a layer, or a dict of
            :class:`~keras_sysid.behavior.GainModulator` arguments (``n_neurons`` is filled in).
        behavior_stats: Train-tier ``{"mean", "std"}`` of the behaviour
            (:func:`variable_stats`), as needed.
        pupil_stats: Train-tier ``{"mean", "std"}`` of the pupil centre
            (:func:`variable_stats`), as needed.

    Returns:
        A built :class:`SystemIdentificationModel` (not compiled).
    """
    core_layer = cores.get(core if core is not None else "stacked_conv2d", name="core")
    readout_layer = readouts.get(readout if readout is not None else "factorized", n_neurons=n_neurons, name="readout")
    if getattr(readout_layer, "n_neurons", n_neurons) != n_neurons:
        raise ValueError(f"The readout predicts {readout_layer.n_neurons} neurons but n_neurons={n_neurons}.")
    if isinstance(shifter, dict):
        shifter = behavior.Shifter(**shifter, name="shifter")
    if isinstance(modulator, dict):
        modulator = behavior.GainModulator(**{"n_neurons": n_neurons, **modulator}, name="modulator")
    model = SystemIdentificationModel(
        core_layer,
        readout_layer,
        image_shape=image_shape,
        nonlinearity=nonlinearity,
        image_mean=image_mean,
        image_std=image_std,
        behavior_channels=behavior_channels,
        shifter=shifter,
        modulator=modulator,
        behavior_stats=behavior_stats,
        pupil_stats=pupil_stats,
        name=name,
    )
    if mean_responses is not None:
        model.set_mean_responses(mean_responses)
    return model
