"""Numpy arrays as a recording: ``load((images, responses))`` or ``load({"images": ..., "responses": ...})``."""

from __future__ import annotations

from collections.abc import Mapping

from keras_sysid.data.formats import register_format
from keras_sysid.data.recording import Recording, RecordingError

_FIELDS = ("images", "responses", "image_ids", "tiers", "behavior", "pupil_center", "neurons")


def _is_arrays(source) -> bool:
    return (isinstance(source, tuple) and len(source) == 2) or (isinstance(source, Mapping) and "images" in source)


@register_format("arrays", _is_arrays, "(images, responses) or a dict of arrays with 'images' and 'responses'")
def load_arrays(source, *, name: str = "arrays", tier_rule: str = "auto", test_fraction: float = 0.15,
                validation_fraction: float = 0.1, seed: int = 0) -> Recording:
    """Numpy arrays as a :class:`Recording` (:meth:`Recording.from_arrays`, whose arguments these are)."""
    fields = dict(zip(("images", "responses"), source)) if isinstance(source, tuple) else dict(source)
    unknown = sorted(set(fields) - set(_FIELDS))
    if unknown or "responses" not in fields:
        raise RecordingError(f"A recording of arrays takes {', '.join(_FIELDS)} (images and responses needed); "
                             f"got {sorted(fields)}.")
    images, responses = fields.pop("images"), fields.pop("responses")
    return Recording.from_arrays(images, responses, **fields, name=name, tier_rule=tier_rule,
                                 test_fraction=test_fraction, validation_fraction=validation_fraction, seed=seed)
