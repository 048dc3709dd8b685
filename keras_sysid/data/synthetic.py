"""Synthetic populations with known cells and known receptive-field locations.

Two ground truths, both seeded and both readable with a linear-nonlinear
output stage ``rate = softplus(gain * z + offset)`` where ``z`` is a
standardised drive:

- ``"dog"`` (Klindt et al. 2017, Fig. 4): centre-surround difference-of-
  Gaussians cells of ``n_types`` sizes, optional within-type size jitter, each
  at a random location. A linear filter per neuron, so a one-layer core with
  one kernel per type can represent it exactly (up to the jitter).
- ``"cnn"``: a fixed random two-layer CNN. Layer 1: ``2 * n_types`` smooth
  random 9x9 filters, full-wave rectified; layer 2: a positive random 1x1
  mixture into ``n_types`` feature maps. Each neuron reads one type at one
  location. The response is even in the image (``r(x) == r(-x)``), so its
  spike-triggered average is zero and no linear-nonlinear model can fit it.

Noise is Poisson-like, ``y + N(0, sqrt|y|)``; noise-free rates are kept for
scoring. Images are white noise, ``N(0, 1)`` per pixel.

Optionally (``behavior_gain``, ``eye_shift``) each trial also has a known
animal state that modulates the responses, for testing models that take it
(:mod:`keras_sysid.behavior`): behaviour variables that scale each neuron's
rate by a known gain, and a pupil centre that shifts the image on the
"retina" by a known amount. Without either flag the population is exactly as
before (the state is drawn from its own random stream).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from keras_sysid.data.pipeline import EpochStream, make_dataset

GROUND_TRUTHS = ("dog", "cnn")
_DOG_FOOTPRINT = 13  # pixels; a 13x13 first-layer kernel can represent a cell exactly
_CNN_FILTER_SIZE = 9
_CHUNK = 512  # images per block when filtering, to bound memory


@dataclasses.dataclass(frozen=True)
class Split:
    """One split of a synthetic data set.

    Attributes:
        images: ``(n, H, W, 1)`` float32 white-noise images, as presented.
        responses: ``(n, N)`` float32 noisy responses (what a model is fitted to).
        clean_responses: ``(n, N)`` float32 noise-free rates (what it is scored on).
        behavior: ``(n, 3)`` float32 (pupil dilation, its derivative, running
            speed), or ``None`` for a population without modulation.
        pupil_center: ``(n, 2)`` float32 pupil position (camera pixels), or ``None``.
        true_gain: ``(n, N)`` the known gain on each rate (all ones without
            ``behavior_gain``), or ``None``.
        true_shift: ``(n, 2)`` the known (row, column) eye shift in pixels
            (zeros without ``eye_shift``), or ``None``: on trial ``t`` a neuron
            whose filter sits at pixel ``p`` sees the presented image at
            ``p + true_shift[t]``, which is a model's read position moved by
            ``true_shift[t]`` (:func:`keras_sysid.behavior.translate_feature_maps`).
    """

    images: np.ndarray
    responses: np.ndarray
    clean_responses: np.ndarray
    behavior: np.ndarray | None = None
    pupil_center: np.ndarray | None = None
    true_gain: np.ndarray | None = None
    true_shift: np.ndarray | None = None


@dataclasses.dataclass(frozen=True)
class LinearNonlinearStage:
    """``rate = softplus(gain * (drive - drive_mean) / drive_std + offset)``."""

    gain: float
    offset: float
    drive_mean: np.ndarray  # (N,)
    drive_std: np.ndarray  # (N,)

    def __call__(self, drive: np.ndarray) -> np.ndarray:
        z = (drive - self.drive_mean) / self.drive_std
        return np.logaddexp(0.0, self.gain * z + self.offset)


@dataclasses.dataclass(frozen=True)
class DoGGroundTruth:
    """Centre-surround cells: one unit-norm linear filter per neuron.

    Attributes:
        filters: ``(N, H, W)`` each neuron's full-image filter (zero outside
            its 13x13 footprint).
        output: The output stage mapping drives to rates.
    """

    filters: np.ndarray
    output: LinearNonlinearStage

    def drive(self, images: np.ndarray) -> np.ndarray:
        """``(n, H, W, 1)`` images -> ``(n, N)`` linear drives."""
        flat_images = images.reshape(len(images), -1)
        return flat_images @ self.filters.reshape(len(self.filters), -1).T

    def respond(self, images: np.ndarray) -> np.ndarray:
        """``(n, H, W, 1)`` images -> ``(n, N)`` noise-free rates."""
        return self.output(self.drive(images)).astype("float32")


@dataclasses.dataclass(frozen=True)
class CNNGroundTruth:
    """A fixed random two-layer CNN read at one location per neuron.

    Attributes:
        layer1: ``(9, 9, 2K)`` smooth random filters ("valid" convolution).
        mixing: ``(2K, K)`` non-negative mixture of rectified layer-1 maps.
        locations: ``(N, 2)`` integer (row, col) pixel of each neuron.
        types: ``(N,)`` the feature map each neuron reads.
        output: The output stage mapping drives to rates.
    """

    layer1: np.ndarray
    mixing: np.ndarray
    locations: np.ndarray
    types: np.ndarray
    output: LinearNonlinearStage

    def feature_maps(self, images: np.ndarray) -> np.ndarray:
        """``(n, H, W, 1)`` -> ``(n, H - 8, W - 8, K)`` the CNN's feature maps."""
        size = self.layer1.shape[0]
        kernel = self.layer1.reshape(size * size, -1)
        blocks = []
        for start in range(0, len(images), _CHUNK):
            chunk = images[start : start + _CHUNK, :, :, 0].astype("float32")
            windows = np.lib.stride_tricks.sliding_window_view(chunk, (size, size), axis=(1, 2))
            n, rows, cols = windows.shape[:3]
            layer1 = np.abs(windows.reshape(n * rows * cols, size * size) @ kernel)
            blocks.append((layer1 @ self.mixing).reshape(n, rows, cols, -1))
        return np.concatenate(blocks)

    def drive(self, images: np.ndarray) -> np.ndarray:
        """``(n, H, W, 1)`` images -> ``(n, N)`` drives before the output stage."""
        maps = self.feature_maps(images)
        margin = self.layer1.shape[0] // 2
        return maps[:, self.locations[:, 0] - margin, self.locations[:, 1] - margin, self.types]

    def respond(self, images: np.ndarray) -> np.ndarray:
        """``(n, H, W, 1)`` images -> ``(n, N)`` noise-free rates."""
        return self.output(self.drive(images)).astype("float32")


@dataclasses.dataclass(frozen=True)
class SyntheticPopulation:
    """A synthetic population and its data, with the truth kept for scoring.

    Attributes:
        ground_truth: ``"dog"`` or ``"cnn"``.
        model: The generating model (:class:`DoGGroundTruth` or
            :class:`CNNGroundTruth`); ``model.respond(images)`` simulates.
        locations: ``(N, 2)`` true RF centres, (row, col) in pixels.
        types: ``(N,)`` true cell type of each neuron.
        train, validation, test: :class:`Split` s.
    """

    ground_truth: str
    model: DoGGroundTruth | CNNGroundTruth
    locations: np.ndarray
    types: np.ndarray
    train: Split
    validation: Split
    test: Split

    @property
    def n_neurons(self) -> int:
        return len(self.locations)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.images.shape[1:])

    def dataset(self, split: str = "train", batch_size: int = 64, shuffle: bool | None = None, seed: int = 0, clean: bool = False):
        """A ``tf.data.Dataset`` of ``(images, responses)`` batches of one split.

        Args:
            split: ``"train"``, ``"validation"`` or ``"test"``.
            batch_size: Images per batch.
            shuffle: Reshuffle each epoch (default: only for ``"train"``).
            seed: Shuffle seed.
            clean: Yield noise-free rates instead of noisy responses.
        """
        if split not in ("train", "validation", "test"):
            raise ValueError(f"Unknown split {split!r}; choose 'train', 'validation' or 'test'.")
        part = getattr(self, split)
        return make_dataset(
            part.images,
            part.clean_responses if clean else part.responses,
            batch_size=batch_size,
            shuffle=(split == "train") if shuffle is None else shuffle,
            seed=seed,
        )


    def epoch_stream(
        self, split: str = "train", batch_size: int = 64, seed: int = 0, passes_per_epoch: int = 1
    ) -> EpochStream:
        """The split's shuffled batches as an :class:`~keras_sysid.data.pipeline.EpochStream`
        (for :func:`~keras_sysid.training.fit_with_schedule`: exact resume and
        distribution)."""
        if split not in ("train", "validation", "test"):
            raise ValueError(f"Unknown split {split!r}; choose 'train', 'validation' or 'test'.")
        part = getattr(self, split)
        return EpochStream(part.images, part.responses, batch_size=batch_size, seed=seed, passes_per_epoch=passes_per_epoch)


def _gaussian(radius: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    g = np.exp(-0.5 * (radius / sigma) ** 2)
    return g / g.sum(axis=(-2, -1), keepdims=True)


def _dog_filters(locations, types, image_size, n_types, jitter, rng) -> np.ndarray:
    n = len(locations)
    # Type k: centre sigma from 0.8 to 1.6 px, surround twice as wide at 0.8 of its weight.
    centre_sigma = np.linspace(0.8, 1.6, n_types)[types]
    scale = 1.0 + jitter * rng.standard_normal((n, 2))
    centre = (centre_sigma * np.clip(scale[:, 0], 0.5, 1.5))[:, None, None]
    surround = (2.0 * centre_sigma * np.clip(scale[:, 1], 0.5, 1.5))[:, None, None]
    half = _DOG_FOOTPRINT // 2
    offsets = np.arange(-half, half + 1)
    radius = np.hypot(offsets[:, None], offsets[None, :])[None]
    kernels = _gaussian(radius, centre) - 0.8 * _gaussian(radius, surround)
    kernels /= np.linalg.norm(kernels, axis=(1, 2), keepdims=True)
    filters = np.zeros((n, image_size, image_size), dtype="float32")
    for index, (row, col) in enumerate(locations):
        filters[index, row - half : row + half + 1, col - half : col + half + 1] = kernels[index]
    return filters


def _smooth_random_filters(n_filters: int, rng) -> np.ndarray:
    """``(9, 9, n_filters)`` zero-mean, unit-norm, spatially smooth random filters."""
    size = _CNN_FILTER_SIZE
    offsets = np.arange(size) - size // 2
    blur = np.exp(-0.5 * (offsets / 1.0) ** 2)
    envelope = np.exp(-0.5 * (np.hypot(offsets[:, None], offsets[None, :]) / 2.0) ** 2)
    noise = rng.standard_normal((n_filters, size + 8, size + 8))
    # Separable Gaussian blur, then crop, window, centre and normalise.
    smooth = np.apply_along_axis(lambda v: np.convolve(v, blur, mode="same"), 1, noise)
    smooth = np.apply_along_axis(lambda v: np.convolve(v, blur, mode="same"), 2, smooth)[:, 4:-4, 4:-4]
    filters = smooth * envelope
    filters -= filters.mean(axis=(1, 2), keepdims=True)
    filters /= np.linalg.norm(filters, axis=(1, 2), keepdims=True)
    return np.moveaxis(filters, 0, -1).astype("float32")


def _offset_for_mean_rate(gain: float, mean_rate: float) -> float:
    """The offset with ``E[softplus(gain * z + offset)] = mean_rate`` for ``z ~ N(0, 1)``."""
    z = np.random.default_rng(12345).standard_normal(200_000)
    low, high = -20.0, 20.0 + mean_rate
    for _ in range(60):
        middle = 0.5 * (low + high)
        if np.logaddexp(0.0, gain * z + middle).mean() < mean_rate:
            low = middle
        else:
            high = middle
    return 0.5 * (low + high)


# The state's distributions; standardising with these constants makes the
# gain and the shift fixed, known functions of the recorded variables.
_BEHAVIOR_MEAN, _BEHAVIOR_STD = np.array([5.0, 0.0, 1.0]), np.array([1.0, 0.3, 1.0])
_PUPIL_MEAN, _PUPIL_STD = np.array([150.0, 120.0]), np.array([8.0, 6.0])
EYE_SHIFT_PER_STD = 1.5  # pixels of shift per standard deviation of pupil position
EYE_SHIFT_LIMIT = 3.0  # pixels
GAIN_WEIGHT_STD = 0.3  # of each neuron's weights on (standardised) dilation and running speed
GAIN_LIMIT = 4.0  # gains stay in (1 / GAIN_LIMIT, GAIN_LIMIT): running speed has a long tail


def _animal_state(n_trials: int, n_neurons: int, behavior_gain: bool, eye_shift: bool, seed: int) -> dict:
    """Behaviour, pupil centre, and the gains and shifts they cause (ones / zeros when switched off)."""
    rng = np.random.default_rng([seed, 1])  # its own stream: the population's draws are unchanged
    behavior = rng.normal(_BEHAVIOR_MEAN, _BEHAVIOR_STD, (n_trials, 3))
    behavior[:, 2] = np.exp(rng.normal(-0.25, 0.7, n_trials))  # running speed: skewed, positive, mean about 1
    pupil = rng.normal(_PUPIL_MEAN, _PUPIL_STD, (n_trials, 2))
    weights = rng.normal(0.0, GAIN_WEIGHT_STD, (n_neurons, 3)) * np.array([1.0, 0.0, 1.0])
    standard_behavior = (behavior - _BEHAVIOR_MEAN) / _BEHAVIOR_STD
    # exp(w . b), its exponent bounded smoothly by tanh (equal to it for small w . b), so that no
    # rare fast-running trial multiplies a rate a hundredfold.
    bound = np.log(GAIN_LIMIT)
    gain = np.exp(bound * np.tanh(standard_behavior @ weights.T / bound)) if behavior_gain else np.ones((n_trials, n_neurons))
    shift = np.clip(EYE_SHIFT_PER_STD * (pupil - _PUPIL_MEAN) / _PUPIL_STD, -EYE_SHIFT_LIMIT, EYE_SHIFT_LIMIT)
    if not eye_shift:
        shift = np.zeros_like(shift)
    return {"behavior": behavior.astype("float32"), "pupil_center": pupil.astype("float32"),
            "true_gain": gain.astype("float32"), "true_shift": shift.astype("float32")}


def shift_images(images: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """``out[t, i, j] = images[t, i + shift[t, 0], j + shift[t, 1]]``: bilinear, zero outside.

    Args:
        images: ``(n, H, W, C)``.
        shift: ``(n, 2)`` (rows, columns) in pixels.
    """
    _, height, width, _ = images.shape

    def interpolation(size, offset):
        cells = np.arange(size, dtype="float64")
        return np.maximum(0.0, 1.0 - np.abs(cells[None, None, :] - (cells[None, :, None] + offset[:, None, None])))

    rows = interpolation(height, shift[:, 0].astype("float64"))
    columns = interpolation(width, shift[:, 1].astype("float64"))
    moved = np.einsum("tik,tkwc->tiwc", rows, images, optimize=True)
    return np.einsum("tjl,tilc->tijc", columns, moved, optimize=True).astype(images.dtype)


def _noisy_splits(images: np.ndarray, clean: np.ndarray, sizes, rng) -> list[Split]:
    """Poisson-like noise ``y + N(0, sqrt|y|)`` on the rates, then train / validation / test splits of ``sizes``."""
    noisy = (clean + rng.standard_normal(clean.shape) * np.sqrt(np.abs(clean))).astype("float32")
    bounds = np.cumsum([0, *sizes])
    return [Split(images[a:b], noisy[a:b], clean[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


def make_population(
    ground_truth: str = "dog",
    n_neurons: int = 1000,
    n_types: int = 2,
    image_size: int = 48,
    n_train: int = 8192,
    n_validation: int = 1024,
    n_test: int = 2048,
    jitter: float = 0.05,
    mean_rate: float = 1.0,
    gain: float = 1.5,
    margin: int = 6,
    seed: int = 0,
    behavior_gain: bool = False,
    eye_shift: bool = False,
) -> SyntheticPopulation:
    """Simulates a population and its responses to white-noise images.

    Args:
        ground_truth: ``"dog"`` (linear centre-surround cells) or ``"cnn"``
            (a fixed random nonlinear CNN).
        n_neurons: Number of neurons ``N``.
        n_types: Number of cell types ``K``; neurons are split evenly.
        image_size: Images are ``image_size x image_size``.
        n_train: Images in the training split.
        n_validation: Images in the validation split.
        n_test: Images in the test split.
        jitter: DoG only: relative s.d. of each cell's centre and surround size
            around its type's (0.05 in the paper's Fig. 4).
        mean_rate: Mean noise-free rate over neurons and images.
        gain: Slope of the output softplus on the standardised drive; larger is
            more rectified, sparser.
        margin: RF centres keep this many pixels from the border, so that the
            paper's 13x13 "valid" core (margin 6) can place a readout on every cell.
        seed: Seeds everything.
        behavior_gain: Multiply each neuron's noise-free rate on trial ``t``
            by ``exp(log4 * tanh(w_n . b_t / log4))`` (about ``exp(w_n . b_t)``,
            bounded to (1/4, 4)): ``b_t = (behavior_t - (5, 0, 1)) / (1, 0.3, 1)``
            the trial's standardised behaviour, ``w_n ~ N(0, 0.3^2)`` on
            dilation and running speed (0 on the derivative), so the middle
            90% of gains span about 0.55 to 1.8.
        eye_shift: Shift each trial's image on the "retina" by
            ``clip(1.5 * (pupil_center - (150, 120)) / (8, 6), -3, 3)`` pixels
            (bilinear, zeros outside, see :func:`shift_images`; a cell at pixel
            ``p`` sees the presented image at ``p + true_shift``); the splits keep the
            presented images. With either flag, every split carries
            ``behavior``, ``pupil_center``, ``true_gain`` and ``true_shift``.

    Returns:
        A :class:`SyntheticPopulation`.
    """
    if ground_truth not in GROUND_TRUTHS:
        raise ValueError(f"Unknown ground truth {ground_truth!r}; choose one of {GROUND_TRUTHS}.")
    for name, value, least in (("n_neurons", n_neurons, 1), ("n_types", n_types, 1), ("n_train", n_train, 1),
                               ("n_validation", n_validation, 1), ("n_test", n_test, 1)):
        if int(value) < least:
            raise ValueError(f"{name} must be >= {least}; got {value}.")
    least_margin = max(_DOG_FOOTPRINT // 2 if ground_truth == "dog" else _CNN_FILTER_SIZE // 2, 0)
    if margin < least_margin:
        raise ValueError(f"margin must be >= {least_margin} for the {ground_truth!r} ground truth; got {margin}.")
    if image_size - 2 * margin < 1:
        raise ValueError(f"image_size {image_size} leaves no room for RF centres with margin {margin}.")
    if mean_rate <= 0 or gain <= 0 or jitter < 0:
        raise ValueError(f"mean_rate and gain must be > 0 and jitter >= 0; got {mean_rate}, {gain}, {jitter}.")

    rng = np.random.default_rng(seed)
    locations = rng.integers(margin, image_size - margin, size=(n_neurons, 2))
    types = np.arange(n_neurons) % n_types
    n_total = n_train + n_validation + n_test
    images = rng.standard_normal((n_total, image_size, image_size, 1), dtype="float32")
    offset = _offset_for_mean_rate(gain, mean_rate)
    state = _animal_state(n_total, n_neurons, behavior_gain, eye_shift, seed) if behavior_gain or eye_shift else None
    # What the cells see: the presented images, moved by the eye.
    seen = shift_images(images, state["true_shift"]) if eye_shift else images

    if ground_truth == "dog":
        filters = _dog_filters(locations, types, image_size, n_types, jitter, rng)
        # Unit-norm filters on unit-variance white noise give unit-variance drives.
        output = LinearNonlinearStage(gain, offset, np.zeros(n_neurons), np.ones(n_neurons))
        model = DoGGroundTruth(filters, output)
        drive = model.drive(seen)
    else:
        layer1 = _smooth_random_filters(2 * n_types, rng)
        mixing = rng.dirichlet(np.ones(2 * n_types), size=n_types).T.astype("float32")
        raw = CNNGroundTruth(layer1, mixing, locations, types, LinearNonlinearStage(gain, offset, 0.0, 1.0))
        drive = raw.drive(images)
        # Drives are stationary over space: standardise each type once, over all its neurons. On the
        # presented images, so that the cells are the same whether or not the eye moves.
        type_mean = np.array([drive[:, types == k].mean() for k in range(n_types)])
        type_std = np.array([drive[:, types == k].std() for k in range(n_types)])
        if eye_shift:
            drive = raw.drive(seen)
        output = LinearNonlinearStage(gain, offset, type_mean[types], type_std[types])
        model = dataclasses.replace(raw, output=output)

    clean = output(drive).astype("float32")
    if state is not None:
        clean = clean * state["true_gain"]
    sizes = (n_train, n_validation, n_test)
    splits = _noisy_splits(images, clean, sizes, rng)
    if state is not None:
        bounds = np.cumsum([0, *sizes])
        splits = [dataclasses.replace(split, **{key: value[a:b] for key, value in state.items()})
                  for split, a, b in zip(splits, bounds[:-1], bounds[1:])]
    return SyntheticPopulation(ground_truth, model, locations.astype("float64"), types, *splits)


def new_neurons(
    population: SyntheticPopulation,
    n_neurons: int,
    n_train: int,
    n_validation: int = 512,
    n_test: int = 2048,
    margin: int = 6,
    seed: int = 1,
) -> SyntheticPopulation:
    """A new population of the same cell types: same features, new neurons and images.

    The nonlinear CNN ground truth's filters, mixture and per-type output
    stage are kept; locations, type assignment, images and noise are new.
    This is the setting of transfer learning: a core fitted to
    ``population`` already computes what the new neurons compute.

    Args:
        population: A ``"cnn"`` population.
        n_neurons: Neurons of the new population.
        n_train: Images in the training split.
        n_validation: Images in the validation split.
        n_test: Images in the test split.
        margin: RF centres keep this many pixels from the border.
        seed: Seeds the new neurons, images and noise.

    Returns:
        A :class:`SyntheticPopulation`.
    """
    if population.ground_truth != "cnn":
        raise ValueError(f"new_neurons needs the 'cnn' ground truth; got {population.ground_truth!r}.")
    truth = population.model
    image_size = population.image_shape[0]
    n_types = truth.mixing.shape[1]
    rng = np.random.default_rng(seed)
    locations = rng.integers(margin, image_size - margin, size=(n_neurons, 2))
    types = rng.integers(0, n_types, size=n_neurons)
    # The output stage standardises per type, so it carries over neuron by neuron.
    type_mean = np.zeros(n_types)
    type_std = np.ones(n_types)
    old = truth.output
    type_mean[population.types] = np.asarray(old.drive_mean)
    type_std[population.types] = np.asarray(old.drive_std)
    output = LinearNonlinearStage(old.gain, old.offset, type_mean[types], type_std[types])
    model = dataclasses.replace(truth, locations=locations, types=types, output=output)
    n_total = n_train + n_validation + n_test
    images = rng.standard_normal((n_total, image_size, image_size, 1), dtype="float32")
    splits = _noisy_splits(images, model.respond(images), (n_train, n_validation, n_test), rng)
    return SyntheticPopulation("cnn", model, locations.astype("float64"), types, *splits)
