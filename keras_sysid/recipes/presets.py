"""Named recipes and the settings they are made of, as data (in the style of KerasHub's ``*_presets.py``).

A recipe is a model spec (core, readout, the animal's-state parts, how
neurons are placed, learning rate) and fit settings. :data:`RECIPES` names
the ones a lab reaches for; :func:`recording_spec` composes a spec from a
core, a readout and state parts by name (``keras-sysid fit --core --readout
--state``). The synthetic ground truth's runs are described by
:class:`SyntheticRunConfig`.
"""

from __future__ import annotations

import dataclasses


def paper_core(channels: int = 48) -> dict:
    """The paper's three-layer core: 13x13 valid, then two 3x3 same convolutions.

    48 channels on mouse V1 (Lurz et al.'s baselines use 48 to 64); the
    synthetic runs use 32. Penalties as tuned for these experiments.
    """
    return {
        "type": "stacked_conv2d", "channels": int(channels), "kernel_sizes": [13, 3, 3],
        "smoothness": 0.01, "group_sparsity": 0.001,
    }


def linear_core(n_types: int) -> dict:
    """The paper's Fig. 4 fit: one 13x13 layer, one kernel per cell type, linear.

    Its "same" padding keeps the grid as large as the image: a kernel that
    learns its cell off-centre shifts every mask the other way, and with a
    "valid" grid the cells nearest the border would then fall off it.
    """
    return {"type": "stacked_conv2d", "channels": int(n_types), "kernel_sizes": [13], "paddings": "same", "smoothness": 0.01}


# -- the synthetic ground truth (keras-sysid fit without --data) --

# Core presets of the synthetic runs, by name: a function of the number of cell types.
SYNTHETIC_CORES = {
    "linear": linear_core,
    "paper": lambda n_types: paper_core(32),
    "identity": lambda n_types: {"type": "identity"},
}
DEFAULT_SYNTHETIC_CORE = {"dog": "linear", "cnn": "paper"}

# Readout settings of the synthetic runs. A readout with positions starts each
# neuron where the data place it (its start_from_data, the default). A
# registered readout that is not listed runs with its class defaults.
SYNTHETIC_READOUTS = {
    "factorized": {"readout": {"type": "factorized", "l1": 0.05}},
    "fixed_mask": {"readout": {"type": "fixed_mask", "mask_sigma": 1.0, "l1": 0.001}},
    "fully_connected": {"readout": {"type": "fully_connected", "l2": 0.01, "smoothness": 0.1}},
}


def synthetic_readout(name: str) -> dict:
    """``{"readout": spec}`` for a synthetic run's readout ``name``."""
    return SYNTHETIC_READOUTS.get(name, {"readout": {"type": name}})


@dataclasses.dataclass
class SyntheticRunConfig:
    """Settings of one synthetic run, ``keras-sysid fit`` without ``--data`` (defaults: the paper's Fig. 4)."""

    ground_truth: str = "dog"
    n_neurons: int = 1000
    n_types: int = 2
    image_size: int = 48
    n_train: int = 8192
    jitter: float = 0.05
    seed: int = 0
    core: str = "auto"
    readout: str = "factorized"
    epochs: int = 200
    batch_size: int = 64
    learning_rate: float = 0.003
    patience: int = 5

    def recording(self):
        """The simulated population this config fits as a :class:`~keras_sysid.data.Recording` (seeded)."""
        from keras_sysid.data.formats import load

        return load(f"synthetic:{self.ground_truth}", n_neurons=self.n_neurons, n_types=self.n_types,
                    image_size=self.image_size, n_train=self.n_train, jitter=self.jitter, seed=self.seed)

    def population(self):
        """The simulated population this config fits (seeded, so always the same), with its generating model."""
        from keras_sysid.data.synthetic import make_population

        return make_population(
            self.ground_truth, n_neurons=self.n_neurons, n_types=self.n_types, image_size=self.image_size,
            n_train=self.n_train, jitter=self.jitter, seed=self.seed,
        )


def zoo_synthetic_config(ground_truth: str) -> SyntheticRunConfig:
    """The run behind the zoo's synthetic entries: Fig. 4 (``dog``, 2 types) or ``cnn`` with 4 types."""
    return SyntheticRunConfig(ground_truth=ground_truth, n_types=2 if ground_truth == "dog" else 4)


# -- recordings (keras-sysid fit --data) --


@dataclasses.dataclass
class FitSettings:
    """Optimisation settings of a recording's fit (a spec's own ``learning_rate`` takes precedence).

    Early stopping on the validation correlation ends a fit: after
    ``patience`` epochs without improvement the best weights come back and
    the learning rate is divided by 3, ``n_decays`` times; the next plateau
    stops. ``max_epochs`` is only a safety (a fit that reaches it says so).
    An epoch passes over the train tier as often as it takes to see at least
    ``min_images_per_epoch`` images, so patience means as much training on a
    few hundred images as on thousands, and the validation tier is not
    checked after a handful of steps.
    """

    max_epochs: int = 200
    learning_rate: float = 0.003
    patience: int = 4
    n_decays: int = 2
    batch_size: int = 64
    seed: int = 0
    min_images_per_epoch: int = 2048

    def passes_per_epoch(self, n_train: int) -> int:
        """Passes over ``n_train`` training trials per epoch: enough for ``min_images_per_epoch``."""
        return max(1, -(-int(self.min_images_per_epoch) // max(int(n_train), 1)))


MOUSE_CORE = paper_core(48)
# Lurz et al. (2021)'s core: 4 layers of 64 channels, 9x9 then depth-separable
# 7x7, squeeze-and-excitation, batch norm, ELU, Laplacian smoothness on the first layer.
LURZ_CORE = {"type": "se2d", "channels": 64, "n_layers": 4, "input_kernel": 9, "hidden_kernel": 7, "smoothness": 0.01}
CORTEX_GAUSSIAN = {"type": "cortex_gaussian", "l1": 0.001, "init_sigma": 0.2, "hidden_units": [30]}

# The cores a recording's model may have, by name: the paper's (48 channels),
# Lurz et al.'s, or none (a model on the pixels).
RECORDING_CORES = {"paper": MOUSE_CORE, "lurz": LURZ_CORE, "identity": {"type": "identity"}}

# Readout settings on mouse V1, each chosen on the validation tier of the
# mouse V1 comparisons (Klindt et al. 2017, Table 1; the reasons are in
# keras_sysid/experiments/presets.py): the readout (readouts with positions
# start where the data place each neuron, their start_from_data) and a
# learning rate where it differs from FitSettings'.
# A registered readout that is not listed runs with its class defaults.
RECORDING_READOUTS = {
    "fully_connected": {"readout": {"type": "fully_connected", "pool_size": 2, "l2": 0.001, "dropout": 0.2}},
    "fixed_mask": {"readout": {"type": "fixed_mask", "mask_sigma": 1.5, "l1": 0.001}},
    "factorized": {"readout": {"type": "factorized", "l1": 0.02, "positive_features": False, "start_from_data": True},
                   "learning_rate": 0.001},
    "gaussian": {"readout": {"type": "gaussian", "l1": 0.001, "init_mu_range": 0.5, "init_sigma": 0.2}},
    "cortex_gaussian": {"readout": CORTEX_GAUSSIAN},
}

# The animal's-state parts a recording's model may add (keras-sysid fit --state).
# l2 0.1 on the modulator's output layer: chosen on the validation split of the
# synthetic proof (experiments/modulation.py), best mean FEV over data with and
# without modulation (0.9505; l2 0.01: 0.9488, 1.0: 0.9485).
STATE_PARTS = {
    "behavior_channels": {"behavior_channels": True},
    "shifter": {"shifter": {}},
    "modulator": {"modulator": {"l2": 0.1}},
}


def recording_spec(core: str, readout: str, state=()) -> dict:
    """The model spec of core ``core`` and readout ``readout`` (names), with ``state`` parts, for a recording.

    Raises:
        ValueError: an unknown core or state part (named, with the choices).
    """
    unknown = sorted(set(state) - set(STATE_PARTS))
    if unknown:
        raise ValueError(f"Unknown state parts {unknown}; choose from {sorted(STATE_PARTS)}.")
    if core not in RECORDING_CORES:
        raise ValueError(f"Unknown core {core!r} for a recording; choose one of {sorted(RECORDING_CORES)}.")
    spec = {"core": RECORDING_CORES[core], **RECORDING_READOUTS.get(readout, {"readout": {"type": readout}})}
    for part in state:
        spec.update(STATE_PARTS[part])
    return spec


def pretrained_spec(pretrained: str, readout: str, fine_tune: bool = False) -> dict:
    """The model spec of new neurons on a pretrained core: ``readout`` (a name) on the core of ``pretrained``.

    Args:
        pretrained: A zoo name, zoo folder or ``.keras`` file of an image-only model.
        readout: The new neurons' readout, with its :data:`RECORDING_READOUTS` settings.
        fine_tune: Train the core too; by default it stays frozen (only the readout learns).
    """
    return {"pretrained": str(pretrained), "freeze_core": not fine_tune,
            **RECORDING_READOUTS.get(readout, {"readout": {"type": readout}})}


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A way to fit a recording: what model, and how to fit it.

    Attributes:
        model: The model spec: ``core`` and ``readout`` (``{"type": ...,
            **settings}``), optionally ``behavior_channels``, ``shifter``,
            ``modulator`` (the animal's state) and ``learning_rate``; or, instead of ``core``, ``pretrained`` (a
            zoo model whose core carries the new neurons) and ``freeze_core``
            (:func:`pretrained_spec`).
        settings: Epochs, patience, batch size, seed.
        description: One line for listings and cards.
    """

    model: dict
    settings: FitSettings = dataclasses.field(default_factory=FitSettings)
    description: str = ""

    def with_settings(self, **changes) -> "Recipe":
        """This recipe with some fit settings changed (``max_epochs=20``, ``seed=1``...)."""
        return dataclasses.replace(self, settings=dataclasses.replace(self.settings, **changes))

    def learning_rate(self) -> float:
        return float(self.model.get("learning_rate", self.settings.learning_rate))


RECIPES = {
    "klindt2017": Recipe(
        recording_spec("paper", "factorized"),
        description="Klindt et al. 2017: the paper's three-layer core and factorized readout"),
    "lurz2021": Recipe(
        recording_spec("lurz", "gaussian"),
        description="Lurz et al. 2021: their core and the Gaussian readout"),
    "mouse_v1_best": Recipe(
        recording_spec("lurz", "cortex_gaussian", state=("behavior_channels", "shifter", "modulator")),
        description="The mouse V1 ablation's best single model on validation (zoo: mouse_v1_behavior): Lurz core, "
                    "positions from cortex, behaviour channels, shifter, modulator; needs behaviour, pupil centre "
                    "and cortical coordinates"),
}


def get(name: str) -> Recipe:
    """The named recipe; ``ValueError`` listing the names if unknown."""
    if name not in RECIPES:
        raise ValueError(f"Unknown recipe {name!r}; the recipes are {', '.join(RECIPES)}.")
    return RECIPES[name]
