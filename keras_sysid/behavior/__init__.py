"""Layers that take the animal's state as input: where the eye looks, how aroused it is.

- :class:`Shifter`: pupil centre -> a per-trial shift of every neuron's read
  position (eye movements move the image on the retina), applied to the core's
  feature maps by :func:`translate_feature_maps`, so it works with any readout.
- :class:`GainModulator`: behaviour (pupil dilation, running...) -> a positive
  gain per neuron and trial on the predicted rates.

Both start as the identity (zero shift, unit gain), so an untrained
behaviour-aware model predicts what the image-only model would.
"""

from __future__ import annotations

from keras_sysid.behavior.modulator import GainModulator
from keras_sysid.behavior.shifter import Shifter, translate_feature_maps

__all__ = ["GainModulator", "Shifter", "translate_feature_maps"]
