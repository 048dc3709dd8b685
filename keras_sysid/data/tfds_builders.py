"""TensorFlow Datasets builders: the synthetic ground truth and ``static*-preproc0`` scans.

Both build offline. Use them like any TFDS data set::

    import tensorflow_datasets as tfds
    from keras_sysid.data import tfds_builders

    # Synthetic: generated on the spot (config "dog" or "cnn").
    builder = tfds_builders.SyntheticGroundTruth(config="dog", data_dir="~/tfds")
    builder.download_and_prepare()
    train = builder.as_dataset(split="train", as_supervised=True)

    # Real data: put the published zip (or its extracted folder) in manual_dir.
    builder = tfds_builders.StaticPreproc0(config="static20457-5-9", data_dir="~/tfds")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir="~/downloads"))

``as_supervised=True`` yields ``(image (H, W, 1) float32, responses (N,)
float32)`` pairs in the data's units.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from keras_sysid.data import load_static
from keras_sysid.data.synthetic import make_population

_CITATION_KLINDT = """@inproceedings{klindt2017neural,
  title={Neural system identification for large populations separating what and where},
  author={Klindt, David A. and Ecker, Alexander S. and Euler, Thomas and Bethge, Matthias},
  booktitle={Advances in Neural Information Processing Systems},
  year={2017}
}"""

_CITATION_LURZ = """@inproceedings{lurz2021generalization,
  title={Generalization in data-driven models of primary visual cortex},
  author={Lurz, Konstantin-Klemens and Bashiri, Mohammad and Willeke, Konstantin and
          Jagadish, Akshay K. and Wang, Eric and Walker, Edgar Y. and Cadena, Santiago A. and
          Muhammad, Taliah and Cobos, Erick and Tolias, Andreas S. and Ecker, Alexander S. and
          Sinz, Fabian H.},
  booktitle={International Conference on Learning Representations},
  year={2021}
}"""


@dataclasses.dataclass
class SyntheticConfig(tfds.core.BuilderConfig):
    """One synthetic population (see :func:`keras_sysid.data.make_population`)."""

    ground_truth: str = "dog"
    n_neurons: int = 1000
    n_types: int = 2
    image_size: int = 48
    n_train: int = 8192
    n_validation: int = 1024
    n_test: int = 2048
    seed: int = 0


class SyntheticGroundTruth(tfds.core.GeneratorBasedBuilder):
    """Simulated populations with known cell types and RF locations (Klindt et al. 2017).

    Each example: a white-noise ``image`` ``(S, S, 1)``, the Poisson ``responses``
    ``(N,)`` and the noise-free ``clean_responses`` ``(N,)``. The true RF
    ``locations`` ``(N, 2)`` and cell ``types`` ``(N,)`` are in the metadata.
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    BUILDER_CONFIGS = [
        SyntheticConfig(name="dog", description="Fig. 4: 1000 DoG cells of 2 types, 48x48 images."),
        SyntheticConfig(
            name="cnn", ground_truth="cnn", n_types=4,
            description="Nonlinear two-layer CNN ground truth: 1000 cells of 4 types, 48x48 images.",
        ),
    ]

    def _info(self) -> tfds.core.DatasetInfo:
        config = self.builder_config
        shape = (config.image_size, config.image_size, 1)
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(shape=shape, dtype=np.float32),
                    "responses": tfds.features.Tensor(shape=(config.n_neurons,), dtype=np.float32),
                    "clean_responses": tfds.features.Tensor(shape=(config.n_neurons,), dtype=np.float32),
                }
            ),
            supervised_keys=("image", "responses"),
            citation=_CITATION_KLINDT,
            metadata=tfds.core.MetadataDict(),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # Nothing to download: the data are simulated.
        config = self.builder_config
        population = make_population(
            config.ground_truth, n_neurons=config.n_neurons, n_types=config.n_types,
            image_size=config.image_size, n_train=config.n_train, n_validation=config.n_validation,
            n_test=config.n_test, seed=config.seed,
        )
        self.info.metadata["locations"] = population.locations.tolist()
        self.info.metadata["types"] = population.types.tolist()
        return {
            "train": self._generate_examples(population.train),
            "validation": self._generate_examples(population.validation),
            "test": self._generate_examples(population.test),
        }

    def _generate_examples(self, split):
        for index in range(len(split.images)):
            yield index, {
                "image": split.images[index].astype(np.float32),
                "responses": split.responses[index].astype(np.float32),
                "clean_responses": split.clean_responses[index].astype(np.float32),
            }


@dataclasses.dataclass
class StaticConfig(tfds.core.BuilderConfig):
    """One ``static*-preproc0`` scan: its name prefix, neuron count and image size.

    ``name`` is matched against the file or folder in ``manual_dir``
    (``<name>*`` ending in ``.zip``, or a folder).
    """

    n_neurons: int = 5335
    image_height: int = 36
    image_width: int = 64


class StaticPreproc0(tfds.core.GeneratorBasedBuilder):
    """Mouse visual cortex responses to natural images, in the Lurz et al. (2021) layout.

    Each example is one trial: ``image`` ``(H, W, 1)`` (0..255), ``responses``
    ``(N,)``, ``behavior`` ``(3,)``, ``pupil_center`` ``(2,)``, ``image_id``
    and ``trial_index`` (the trial's file number). Splits are the data set's
    own tiers; repeats of a test image share ``image_id``. For another scan,
    pass ``config=StaticConfig(name=..., n_neurons=..., image_height=...,
    image_width=...)``.
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Download the scan's published zip (e.g. static20457-5-9-preproc0.zip, from the
    data release of Lurz et al. 2021, licence CC BY-NC-ND 4.0) and place it, or its
    extracted folder, in manual_dir.
    """
    BUILDER_CONFIGS = [
        StaticConfig(
            name="static20457-5-9",
            description="Mouse V1 L2/3, 5335 neurons, 36x64 natural images (Lurz et al. 2021).",
        )
    ]

    def _info(self) -> tfds.core.DatasetInfo:
        config = self.builder_config
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(shape=(config.image_height, config.image_width, 1), dtype=np.float32),
                    "responses": tfds.features.Tensor(shape=(config.n_neurons,), dtype=np.float32),
                    "behavior": tfds.features.Tensor(shape=(3,), dtype=np.float32),
                    "pupil_center": tfds.features.Tensor(shape=(2,), dtype=np.float32),
                    "image_id": np.int64,
                    "trial_index": np.int64,
                }
            ),
            supervised_keys=("image", "responses"),
            homepage="https://openreview.net/forum?id=Tp7kI90Htd",
            citation=_CITATION_LURZ,
        )

    def _find_source(self, manual_dir):
        name = self.builder_config.name
        candidates = sorted(p for p in manual_dir.glob(f"{name}*") if p.suffix == ".zip" or p.is_dir())
        if not candidates:
            raise FileNotFoundError(
                f"No {name}*.zip file or {name}* folder in manual_dir {manual_dir}. {self.MANUAL_DOWNLOAD_INSTRUCTIONS}"
            )
        return candidates[0]

    def _split_generators(self, dl_manager):
        config = self.builder_config
        data = load_static(str(self._find_source(dl_manager.manual_dir)))
        expected = (config.image_height, config.image_width, 1)
        if data.n_neurons != config.n_neurons or data.image_shape != expected:
            raise ValueError(
                f"{data.name}: {data.n_neurons} neurons and images {data.image_shape}, but config "
                f"{config.name!r} expects {config.n_neurons} and {expected}."
            )
        return {tier: self._generate_examples(data, tier) for tier in dict.fromkeys(data.tiers.tolist())}

    def _generate_examples(self, data, tier):
        n_trials = data.n_trials
        behavior = data.behavior if data.behavior is not None else np.full((n_trials, 3), np.nan, np.float32)
        pupil = data.pupil_center if data.pupil_center is not None else np.full((n_trials, 2), np.nan, np.float32)
        for index in data.indices(tier):
            yield int(index), {
                "image": data.images[index],
                "responses": data.responses[index],
                "behavior": behavior[index].astype(np.float32),
                "pupil_center": pupil[index].astype(np.float32),
                "image_id": int(data.image_ids[index]),
                "trial_index": int(index),
            }
