"""In-silico experiments on any fitted model: most exciting inputs, gradient receptive fields, tuning curves.

Every function takes any Keras model mapping ``(batch, H, W, C)`` images in the
data's units to ``(batch, N)`` responses: a
:class:`~keras_sysid.models.SystemIdentificationModel`, a zoo entry, an
:class:`~keras_sysid.ensemble.Ensemble`, under any Keras backend.

Example:
    >>> from keras_sysid import insilico
    >>> meis = insilico.most_exciting_inputs(model, range(16), pixel_range=(0, 255))
    >>> rfs = insilico.gradient_receptive_fields(model, range(16), images=natural_images)
"""

from keras_sysid.insilico.mei import MEIResult, contrast_norm, gaussian_blur, most_exciting_inputs
from keras_sysid.insilico.receptive_fields import (
    GradientReceptiveFields,
    fit_gaussian_envelope,
    gradient_maps,
    gradient_receptive_fields,
)
from keras_sysid.insilico.report import (
    DigitalTwinReport,
    best_natural_images,
    digital_twin_report,
    grating_amplitude,
    write_report,
)
from keras_sysid.insilico.tuning import (
    GaborFit,
    TuningCurves,
    fit_gabor,
    gratings,
    orientation_selectivity,
    tuning_curves,
)

__all__ = [
    "DigitalTwinReport",
    "GaborFit",
    "GradientReceptiveFields",
    "MEIResult",
    "TuningCurves",
    "best_natural_images",
    "contrast_norm",
    "digital_twin_report",
    "fit_gaussian_envelope",
    "fit_gabor",
    "gaussian_blur",
    "gradient_maps",
    "gradient_receptive_fields",
    "grating_amplitude",
    "gratings",
    "most_exciting_inputs",
    "orientation_selectivity",
    "tuning_curves",
    "write_report",
]
