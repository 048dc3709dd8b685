"""The synthetic ground truth (keras_sysid.data.synthetic): populations, datasets, new neurons, epoch streams.

And the truth's optional known modulation: behaviour gains and eye shifts.
Checks the API of ``make_population(..., behavior_gain=, eye_shift=)``: off by
default and then nothing changes; the per-trial state's shapes and
distributions; the gain and shift formulas; the shift's sign convention on a
DoG population (a cell at pixel ``p`` responds to the presented image at
``p + true_shift[t]``); the gain is a pure factor on the rate; determinism.
"""

import numpy as np
import pytest

from keras_sysid.data import make_dataset, make_population, synthetic
from keras_sysid.data.synthetic import shift_images


@pytest.mark.parametrize("ground_truth", ["dog", "cnn"])
def test_population_shapes_seed_and_truth(ground_truth):
    kwargs = dict(n_neurons=12, n_types=3, image_size=24, n_train=40, n_validation=8, n_test=16, seed=3)
    pop = make_population(ground_truth, **kwargs)
    again = make_population(ground_truth, **kwargs)
    assert pop.train.images.shape == (40, 24, 24, 1) and pop.train.images.dtype == np.float32
    assert pop.train.responses.shape == (40, 12)
    assert pop.test.clean_responses.shape == (16, 12)
    assert pop.locations.shape == (12, 2) and pop.types.tolist() == [0, 1, 2] * 4
    assert np.all((pop.locations >= 6) & (pop.locations < 18))
    np.testing.assert_array_equal(pop.train.responses, again.train.responses)
    # The kept generator reproduces the clean rates, and noise is on top of them.
    np.testing.assert_allclose(pop.model.respond(pop.test.images), pop.test.clean_responses, rtol=1e-5, atol=1e-6)
    assert np.all(pop.train.clean_responses > 0)
    assert not np.allclose(pop.train.responses, pop.train.clean_responses)
    different = make_population(ground_truth, **{**kwargs, "seed": 4})
    assert not np.allclose(different.train.responses, pop.train.responses)


def test_mean_rate_is_the_target():
    pop = make_population("dog", n_neurons=50, n_train=2000, image_size=32, mean_rate=2.0)
    assert pop.train.clean_responses.mean() == pytest.approx(2.0, rel=0.05)


def test_dog_cell_is_a_linear_filter_at_its_location():
    pop = make_population("dog", n_neurons=3, image_size=32, n_train=4, n_validation=1, n_test=1)
    filters = pop.model.filters
    for index, (row, col) in enumerate(pop.locations.astype(int)):
        peak = np.unravel_index(np.argmax(filters[index]), filters[index].shape)
        assert peak == (row, col)  # centre of an ON centre-surround cell


def test_cnn_ground_truth_is_even_so_linear_models_fail():
    pop = make_population("cnn", n_neurons=20, n_types=4, image_size=24, n_train=8, n_validation=1, n_test=1)
    images = pop.train.images
    np.testing.assert_allclose(pop.model.respond(images), pop.model.respond(-images), rtol=1e-5)


def test_bad_arguments():
    with pytest.raises(ValueError, match="Unknown ground truth"):
        make_population("gabor")
    with pytest.raises(ValueError, match="n_neurons"):
        make_population(n_neurons=0)
    with pytest.raises(ValueError, match="margin"):
        make_population("dog", margin=2)


def test_dataset_batches_and_validates():
    pop = make_population("dog", n_neurons=5, image_size=20, n_train=10, n_validation=3, n_test=3)
    batches = list(pop.dataset("train", batch_size=4))
    assert [b[0].shape[0] for b in batches] == [4, 4, 2]
    assert batches[0][1].shape == (4, 5)
    first = np.concatenate([b[1].numpy() for b in pop.dataset("train", batch_size=4, seed=1)])
    second = np.concatenate([b[1].numpy() for b in pop.dataset("train", batch_size=4, seed=1)])
    np.testing.assert_array_equal(first, second)
    with pytest.raises(ValueError, match="split"):
        pop.dataset("test2")
    with pytest.raises(ValueError, match="3 trials but there are 4 images"):
        make_dataset(np.zeros((4, 5, 5, 1)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="empty"):
        make_dataset(np.zeros((0, 5, 5, 1)), np.zeros((0, 2)))


def test_new_neurons_share_the_features_of_the_population():
    from keras_sysid.data.synthetic import new_neurons

    old = make_population("cnn", n_neurons=40, n_types=3, image_size=24, n_train=64, n_validation=8, n_test=8, seed=0)
    new = new_neurons(old, n_neurons=10, n_train=32, n_validation=8, n_test=16, seed=5)
    assert new.n_neurons == 10 and new.train.images.shape == (32, 24, 24, 1)
    np.testing.assert_array_equal(new.model.layer1, old.model.layer1)
    # A new neuron computes the old feature map of its type, read at its place,
    # through the old output stage of its type.
    maps = old.model.feature_maps(new.test.images)
    stage = old.model.output
    for neuron in range(10):
        kind = new.types[neuron]
        reference = int(np.flatnonzero(old.types == kind)[0])
        row, col = new.locations[neuron].astype(int) - 4
        z = (maps[:, row, col, kind] - stage.drive_mean[reference]) / stage.drive_std[reference]
        expected = np.logaddexp(0.0, stage.gain * z + stage.offset)
        np.testing.assert_allclose(new.test.clean_responses[:, neuron], expected, rtol=1e-5, atol=1e-6)


def test_epoch_stream_passes_per_epoch_make_longer_epochs_that_resume_exactly():
    from keras_sysid.data.pipeline import EpochStream

    images = np.arange(10 * 4, dtype="float32").reshape(10, 2, 2, 1)
    responses = np.arange(10, dtype="float32")[:, None]
    single = EpochStream(images, responses, batch_size=4, seed=2)
    triple = EpochStream(images, responses, batch_size=4, seed=2, passes_per_epoch=3)
    assert (single.steps_per_epoch, triple.steps_per_epoch) == (3, 9)
    # One triple epoch is three single passes; starting at triple epoch 1 is starting at pass 3.
    passes = [b[1].numpy().ravel().tolist() for b in single.dataset().take(12)]
    assert [b[1].numpy().ravel().tolist() for b in triple.dataset().take(9)] == passes[:9]
    assert [b[1].numpy().ravel().tolist() for b in triple.dataset(first_epoch=1).take(3)] == passes[9:12]
    with pytest.raises(ValueError, match="passes_per_epoch"):
        EpochStream(images, responses, passes_per_epoch=0)

# The optional known modulation: behaviour gains and eye shifts.

_SMALL = dict(n_neurons=12, image_size=24, n_train=48, n_validation=8, n_test=8, seed=3)
_SPLITS = ("train", "validation", "test")
_STATE = ("behavior", "pupil_center", "true_gain", "true_shift")
_BEHAVIOR_MEAN, _BEHAVIOR_STD = np.array([5.0, 0.0, 1.0]), np.array([1.0, 0.3, 1.0])
_PUPIL_MEAN, _PUPIL_STD = np.array([150.0, 120.0]), np.array([8.0, 6.0])


def _assert_identical(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _model_arrays(population):
    model = population.model
    arrays = [model.output.drive_mean, model.output.drive_std]
    if population.ground_truth == "dog":
        return arrays + [model.filters]
    return arrays + [model.layer1, model.mixing, model.locations, model.types]


@pytest.mark.parametrize("ground_truth", ["dog", "cnn"])
def test_flags_off_change_nothing(ground_truth):
    plain = make_population(ground_truth, **_SMALL)
    off = make_population(ground_truth, **_SMALL, behavior_gain=False, eye_shift=False)
    for name in _SPLITS:
        for field in ("images", "responses", "clean_responses"):
            _assert_identical(getattr(getattr(off, name), field), getattr(getattr(plain, name), field))
        for field in _STATE:
            assert getattr(getattr(plain, name), field) is None and getattr(getattr(off, name), field) is None
    _assert_identical(off.locations, plain.locations)
    _assert_identical(off.types, plain.types)
    for a, b in zip(_model_arrays(off), _model_arrays(plain)):
        _assert_identical(a, b)
    # Switching modulation on draws from its own stream: the images and the truth stay.
    both = make_population(ground_truth, **_SMALL, behavior_gain=True, eye_shift=True)
    for name in _SPLITS:
        _assert_identical(getattr(both, name).images, getattr(plain, name).images)
    for a, b in zip(_model_arrays(both), _model_arrays(plain)):
        _assert_identical(a, b)


@pytest.mark.parametrize("ground_truth", ["dog", "cnn"])
@pytest.mark.parametrize("flags", [dict(behavior_gain=True), dict(eye_shift=True), dict(behavior_gain=True, eye_shift=True)])
def test_state_shapes_dtypes_and_finite(ground_truth, flags):
    population = make_population(ground_truth, **_SMALL, **flags)
    for name, n in zip(_SPLITS, (48, 8, 8)):
        split = getattr(population, name)
        for field, shape in (("behavior", (n, 3)), ("pupil_center", (n, 2)), ("true_gain", (n, 12)), ("true_shift", (n, 2)),
                             ("responses", (n, 12)), ("clean_responses", (n, 12))):
            value = getattr(split, field)
            assert value.shape == shape and value.dtype == np.float32, field
            assert np.all(np.isfinite(value)), field
    train = population.train
    if not flags.get("behavior_gain"):
        np.testing.assert_array_equal(train.true_gain, 1.0)
    if not flags.get("eye_shift"):
        np.testing.assert_array_equal(train.true_shift, 0.0)


def test_state_distributions_and_formulas():
    population = make_population("dog", n_neurons=40, image_size=24, n_train=400, n_validation=50, n_test=50,
                                 behavior_gain=True, eye_shift=True)
    behavior = np.concatenate([getattr(population, name).behavior for name in _SPLITS]).astype("float64")
    pupil = np.concatenate([getattr(population, name).pupil_center for name in _SPLITS]).astype("float64")
    gain = np.concatenate([getattr(population, name).true_gain for name in _SPLITS]).astype("float64")
    shift = np.concatenate([getattr(population, name).true_shift for name in _SPLITS]).astype("float64")
    # Different scales and non-zero means, so normalisation matters; running speed is >= 0.
    np.testing.assert_allclose(behavior.mean(axis=0), [5.0, 0.0, 1.0], atol=0.15)
    np.testing.assert_allclose(behavior[:, :2].std(axis=0), [1.0, 0.3], rtol=0.15)
    assert np.all(behavior[:, 2] >= 0) and 0.4 < behavior[:, 2].std() < 1.2
    np.testing.assert_allclose(pupil.mean(axis=0), _PUPIL_MEAN, atol=1.5)
    np.testing.assert_allclose(pupil.std(axis=0), _PUPIL_STD, rtol=0.15)

    # shift = clip(1.5 * standardised pupil centre, -3, 3), (row, column).
    expected = np.clip(1.5 * (pupil - _PUPIL_MEAN) / _PUPIL_STD, -3.0, 3.0)
    np.testing.assert_allclose(shift, expected, atol=1e-4)
    assert np.abs(shift).max() == pytest.approx(3.0) and np.std(shift) > 1.0

    # gain = exp(L tanh(w . b / L)), L = log 4: undoing the bound leaves a log-gain linear in the
    # standardised behaviour b, with no weight on the pupil derivative.
    bound = np.log(4.0)
    assert np.all(gain > 1 / 4.0) and np.all(gain < 4.0)
    linear = bound * np.arctanh(np.log(gain) / bound)
    standard = (behavior - _BEHAVIOR_MEAN) / _BEHAVIOR_STD
    weights, *_ = np.linalg.lstsq(standard, linear, rcond=None)
    np.testing.assert_allclose(standard @ weights, linear, atol=2e-3)
    np.testing.assert_allclose(weights[1], 0.0, atol=1e-3)
    assert 0.15 < weights[[0, 2]].std() < 0.5


def test_gains_are_positive_span_a_real_range_and_keep_the_mean_rate():
    population = make_population("dog", n_neurons=40, image_size=24, n_train=400, n_validation=8, n_test=8,
                                 behavior_gain=True)
    gain = population.train.true_gain
    assert np.all(gain > 0)
    low, middle, high = np.percentile(gain, [5, 50, 95])
    assert low < 0.75 and 0.85 < middle < 1.15 and high > 1.4
    # Each neuron's gain varies over trials (not just a per-neuron scale).
    assert np.median(np.log(gain).std(axis=0)) > 0.15
    assert 0.8 < population.train.clean_responses.mean() < 1.3  # mean_rate is 1.0


def test_gain_is_a_pure_factor_on_the_rate():
    both = make_population("dog", **_SMALL, behavior_gain=True, eye_shift=True)
    shift_only = make_population("dog", **_SMALL, eye_shift=True)
    gain_only = make_population("dog", **_SMALL, behavior_gain=True)
    plain = make_population("dog", **_SMALL)
    for name in _SPLITS:
        a, b = getattr(both, name), getattr(shift_only, name)
        np.testing.assert_array_equal(a.true_shift, b.true_shift)
        np.testing.assert_allclose(a.clean_responses / a.true_gain, b.clean_responses, rtol=1e-5, atol=1e-6)
        c, d = getattr(gain_only, name), getattr(plain, name)
        np.testing.assert_allclose(c.clean_responses / c.true_gain, d.clean_responses, rtol=1e-5, atol=1e-6)
        # The same state whichever effect is on.
        for field in ("behavior", "pupil_center"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
            np.testing.assert_array_equal(getattr(a, field), getattr(c, field))
        np.testing.assert_array_equal(a.true_gain, c.true_gain)
        # Same noise draws: Poisson-like noise scaled by the modulated rate.
        z_c = (c.responses - c.clean_responses) / np.sqrt(c.clean_responses)
        z_d = (d.responses - d.clean_responses) / np.sqrt(d.clean_responses)
        np.testing.assert_allclose(z_c, z_d, rtol=1e-3, atol=1e-3)


def test_shift_sign_convention_on_a_dog_population(monkeypatch):
    # A huge slope makes every shift clip to +-3: whole pixels, all four sign combinations.
    monkeypatch.setattr(synthetic, "EYE_SHIFT_PER_STD", 1000.0)
    population = make_population("dog", n_neurons=10, image_size=24, n_train=32, n_validation=4, n_test=4,
                                 margin=9, eye_shift=True, behavior_gain=True)
    split = population.train
    shift = split.true_shift.astype(int)
    np.testing.assert_array_equal(np.abs(split.true_shift), 3.0)
    assert len({tuple(s) for s in shift}) == 4
    truth = population.model
    for t in range(len(split.images)):
        d_row, d_col = shift[t]
        image = split.images[t, :, :, 0]
        # The presented image translated: seen[i, j] = image[i + d_row, j + d_col], zeros outside.
        seen = np.zeros_like(image)
        size = image.shape[0]
        rows, cols = slice(max(0, -d_row), min(size, size - d_row)), slice(max(0, -d_col), min(size, size - d_col))
        seen[rows, cols] = image[rows.start + d_row : rows.stop + d_row, cols.start + d_col : cols.stop + d_col]
        np.testing.assert_array_equal(shift_images(split.images[t : t + 1], split.true_shift[t : t + 1])[0, :, :, 0], seen)
        expected = truth.respond(seen[None, :, :, None])[0] * split.true_gain[t]
        np.testing.assert_allclose(split.clean_responses[t], expected, rtol=1e-4, atol=1e-5)
        # Equivalently: the cell whose filter sits at p responds to the presented image at p + shift
        # (margin 9 keeps every moved 13x13 footprint inside the image).
        moved = np.roll(truth.filters, (d_row, d_col), axis=(1, 2))
        drive = moved.reshape(len(moved), -1) @ image.ravel()
        np.testing.assert_allclose(split.clean_responses[t], truth.output(drive) * split.true_gain[t], rtol=1e-4, atol=1e-5)


def test_fractional_shifts_are_bilinear_with_zeros_outside():
    ndimage = pytest.importorskip("scipy.ndimage")
    images = np.random.default_rng(0).normal(size=(3, 10, 12, 1)).astype("float32")
    shift = np.array([[0.4, -1.7], [-2.25, 2.5], [3.0, 0.0]], "float32")
    moved = shift_images(images, shift)
    for t in range(3):
        # scipy moves content by +s (out[x] = in[x - s]); here out[x] = in[x + s].
        expected = ndimage.shift(images[t, :, :, 0].astype("float64"), -shift[t].astype("float64"), order=1,
                                 mode="grid-constant", cval=0.0)
        np.testing.assert_allclose(moved[t, :, :, 0], expected, atol=1e-5)


def test_seeded_modulation_is_deterministic():
    a = make_population("cnn", **_SMALL, behavior_gain=True, eye_shift=True)
    b = make_population("cnn", **_SMALL, behavior_gain=True, eye_shift=True)
    other = make_population("cnn", **{**_SMALL, "seed": 4}, behavior_gain=True, eye_shift=True)
    for name in _SPLITS:
        for field in (*_STATE, "images", "responses", "clean_responses"):
            _assert_identical(getattr(getattr(a, name), field), getattr(getattr(b, name), field))
    for field in ("behavior", "pupil_center", "true_gain", "true_shift"):
        assert not np.array_equal(getattr(a.train, field), getattr(other.train, field))
