"""Ensembles: the average prediction of several fitted models of the same neurons."""

from __future__ import annotations

import keras
from keras import ops

from keras_sysid.validation import CheckedArraysMixin


@keras.saving.register_keras_serializable(package="keras_sysid")
class Ensemble(CheckedArraysMixin, keras.Model):
    """Averages the predictions of member models of the same neurons.

    Averaging models fitted with different seeds (or different train /
    validation splits) cancels part of each one's fitting noise; the
    SENSORIUM 2022 and 2023 winners averaged 5 to 10. An ensemble is a Keras
    model like its members: it predicts, evaluates, saves to ``.keras`` and to
    the zoo format, and exports.

    Args:
        members: Models mapping the same input to ``(batch, n_neurons)``
            responses of the same neurons, e.g.
            :class:`~keras_sysid.models.SystemIdentificationModel` s. Members
            may take different inputs (image-only and behaviour-aware); the
            ensemble takes the union (:attr:`input_names`) and gives each
            member what it needs.

    Input shape:
        What the members take: ``(batch, H, W, C)`` images, or a dict with
        ``"images"`` and, if a member needs them, ``"behavior"`` and ``"pupil_center"``.

    Output shape:
        ``(batch, n_neurons)``, the members' mean.

    Example:
        >>> ensemble = Ensemble([model_seed0, model_seed1, model_seed2])
        >>> ensemble.predict(images).shape
        (n, 5335)
    """

    def __init__(self, members, **kwargs):
        super().__init__(**kwargs)
        members = list(members)
        if not members:
            raise ValueError("Ensemble needs at least one member model.")
        counts = {getattr(member, "n_neurons", None) for member in members}
        shapes = {tuple(getattr(member, "image_shape", ())) for member in members}
        if len(counts) != 1 or None in counts:
            raise ValueError(f"Ensemble members must predict the same neurons; their n_neurons are {sorted(map(str, counts))}.")
        if len(shapes) != 1:
            raise ValueError(f"Ensemble members must take images of one shape; got {sorted(shapes)}.")
        self.members = members
        self.n_neurons = counts.pop()
        self.image_shape = shapes.pop()
        names = ["images"]
        for member in members:
            names += [name for name in getattr(member, "input_names", ("images",)) if name not in names]
        self.input_names = tuple(names)
        self._input_shapes = {}
        for member in members:
            for name, shape in _member_input_shapes(member).items():
                if self._input_shapes.setdefault(name, shape) != shape:
                    raise ValueError(
                        f"Ensemble members must take {name!r} of one shape; got {self._input_shapes[name]} and {shape}."
                    )
        # The members are built models, so the ensemble has all its weights now.
        self.built = all(member.built for member in members)

    @property
    def takes_state(self) -> bool:
        """Whether some member needs more than images (a dict input)."""
        return len(self.input_names) > 1

    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        """``{name: shape without the batch axis}`` for each of :attr:`input_names`, in order.

        The members' :meth:`~keras_sysid.models.SystemIdentificationModel.input_shapes`
        merged (they agree: checked at construction), e.g. ``{"images": (H, W, C),
        "behavior": (n_behavior,), "pupil_center": (n_pupil,)}`` when some member
        takes the animal's state.
        """
        return {name: self._input_shapes[name] for name in self.input_names}

    def call(self, inputs, training=False):
        predictions = [member(inputs, training=training) for member in self.members]
        return ops.mean(ops.stack(predictions, axis=0), axis=0)

    def compute_output_shape(self, input_shape):
        batch = (input_shape["images"] if isinstance(input_shape, dict) else input_shape)[0]
        return (batch, self.n_neurons)

    def _check_arrays(self, x, y=None, what="data"):
        # One member per distinct set of inputs checks them (shapes, NaN, missing behaviour): the
        # widest alone could miss an input that only another member takes.
        checked = set()
        for member in sorted(self.members, key=lambda m: -len(getattr(m, "input_names", ("images",)))):
            names = set(getattr(member, "input_names", ("images",)))
            if hasattr(member, "_check_arrays") and not names <= checked:
                member._check_arrays(x, y, what)
                checked |= names

    def get_config(self):
        return {"name": self.name, "members": [keras.saving.serialize_keras_object(m) for m in self.members]}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["members"] = [keras.saving.deserialize_keras_object(m) for m in config["members"]]
        return cls(**config)


def _member_input_shapes(member) -> dict[str, tuple[int, ...]]:
    if hasattr(member, "input_shapes"):
        return {name: tuple(shape) for name, shape in member.input_shapes().items()}
    image_shape = getattr(member, "image_shape", None)
    return {"images": tuple(image_shape) if image_shape is not None else tuple(member.input_shape[1:])}
