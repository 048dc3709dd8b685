import numpy as np

from keras_sysid import positions


def test_sta_envelope_finds_a_linear_neurons_location():
    rng = np.random.default_rng(0)
    images = rng.standard_normal((3000, 20, 30)).astype("float32")
    rows, cols = np.mgrid[:20, :30]
    centres = np.array([[5.0, 7.0], [14.0, 22.0], [10.0, 3.5]])
    filters = []
    for r, c in centres:
        radius2 = (rows - r) ** 2 + (cols - c) ** 2
        filters.append(np.exp(-radius2 / 4.0) - 0.5 * np.exp(-radius2 / 16.0))  # centre-surround
    filters = np.stack(filters)
    drive = np.einsum("thw,nhw->tn", images, filters)
    responses = rng.poisson(np.log1p(np.exp(drive))).astype("float32")
    found = positions.envelope_positions(images, responses)
    np.testing.assert_allclose(found, centres, atol=1.0)
    sta = positions.spike_triggered_averages(images[..., None], responses)
    assert sta.shape == (3, 20, 30)


def test_envelope_finds_an_energy_neuron_whose_sta_is_flat():
    rng = np.random.default_rng(1)
    images = rng.standard_normal((4000, 16, 16)).astype("float32")
    rows, cols = np.mgrid[:16, :16]
    gabor = np.exp(-((rows - 11.0) ** 2 + (cols - 4.0) ** 2) / 6.0) * np.cos(cols - 4.0)
    drive = np.abs(np.einsum("thw,hw->t", images, gabor))[:, None]  # full-wave: no STA
    responses = rng.poisson(drive).astype("float32")
    assert np.abs(positions.spike_triggered_averages(images, responses)).max() < 0.1
    np.testing.assert_allclose(positions.envelope_positions(images, responses)[0], [11.0, 4.0], atol=1.0)
