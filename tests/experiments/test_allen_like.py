"""The Allen-like NWB sessions: written with pynwb, read back by ks.data.load with the truth's rates."""

import numpy as np
import pytest

pytest.importorskip("pynwb")

import keras_sysid as ks  # noqa: E402
from keras_sysid.experiments import allen_like  # noqa: E402

CONFIG = allen_like.SessionConfig(n_rois=6, n_images=40, n_test=4, n_repeats=3, seed=2)


def test_a_session_reads_back_as_a_recording_of_its_cells(tmp_path):
    path = allen_like.session_file(CONFIG, tmp_path)
    assert allen_like.session_file(CONFIG, tmp_path) == path  # written once, then reused
    recording = ks.data.load(path)
    truth = allen_like.simulate(CONFIG)
    assert recording.images.shape == (52, 36, 64, 1) and recording.n_neurons == 6
    # The repeated images make the test tier; every trial's image is the one presented.
    assert len(recording.indices("test")) == 12
    np.testing.assert_array_equal(recording.images[..., 0], truth["images"][truth["order"]])
    # The reader's window means follow the simulated rates (noise and the calcium transient aside).
    rates = truth["rates"][truth["order"]]
    correlations = [np.corrcoef(rates[:, n], recording.responses[:, n])[0, 1] for n in range(6)]
    assert min(correlations) > 0.6, correlations
    # ROI centroids follow the cells' receptive fields (retinotopy), for the cortex Gaussian readout.
    centroids = recording.neurons["roi_centroid"]
    assert np.corrcoef(centroids[:, 1], truth["centres"][:, 0])[0, 1] > 0.9


def test_the_readout_table_fits_each_readout_through_the_recipes(tmp_path):
    rows = allen_like.readout_table([CONFIG], ["gaussian"], tmp_path, max_epochs=1, log=lambda line: None)
    (row,) = rows
    assert row["session"] == CONFIG.name and row["readout"] == "gaussian" and row["epochs"] == 1
    assert row["stopped_early"] is False and np.isfinite(row["corr_single"])
