import keras
import numpy as np
import pytest

import keras_sysid as ks
from keras_sysid.training import compile_model
from keras_sysid.transfer import with_new_readout


def _pretrained():
    return ks.build_model(
        8, (20, 24), core={"type": "stacked_conv2d", "channels": 4, "kernel_sizes": [5, 3]},
        readout={"type": "factorized", "l1": 0.02}, image_mean=10.0, image_std=2.0,
    )


def test_frozen_core_keeps_its_weights_and_readout_learns():
    pretrained = _pretrained()
    core_before = [w.copy() for w in pretrained.core.get_weights()]
    model = with_new_readout(pretrained, n_neurons=3, mean_responses=np.ones(3))
    assert model.n_neurons == 3 and model.readout.l1 == 0.02 and model.image_mean == 10.0
    rng = np.random.default_rng(0)
    images = rng.normal(10, 2, (32, 20, 24, 1)).astype("float32")
    responses = rng.poisson(1.0, (32, 3)).astype("float32")
    readout_before = [w.copy() for w in model.readout.get_weights()]
    compile_model(model, 0.01, jit_compile=False)
    model.fit(images, responses, epochs=2, batch_size=8, verbose=0)
    for a, b in zip(model.core.get_weights(), core_before):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(model.readout.get_weights(), readout_before))
    for a, b in zip(pretrained.core.get_weights(), core_before):  # the source model is untouched
        np.testing.assert_array_equal(a, b)


def test_fine_tuning_trains_the_core_and_another_readout_kind_works():
    pretrained = _pretrained()
    model = with_new_readout(pretrained, n_neurons=5, readout={"type": "gaussian"}, freeze_core=False)
    assert isinstance(model.readout, ks.GaussianReadout)
    core_before = [w.copy() for w in model.core.get_weights()]
    compile_model(model, 0.01, jit_compile=False)
    rng = np.random.default_rng(1)
    model.fit(rng.normal(10, 2, (16, 20, 24, 1)).astype("float32"), rng.poisson(1.0, (16, 5)).astype("float32"),
              epochs=1, batch_size=8, verbose=0)
    assert any(not np.array_equal(a, b) for a, b in zip(model.core.get_weights(), core_before))
    assert len(model.trainable_weights) > len(model.readout.trainable_weights)
    keras.saving.serialize_keras_object(model)  # still a plain, saveable model


def test_learning_curve_rows_and_a_fresh_copy_has_new_weights(tmp_path):
    from keras_sysid.data import make_population
    from keras_sysid.experiments.transfer_curve import format_curve, transfer_learning_curve
    from keras_sysid.transfer import fresh_copy

    source = make_population("cnn", n_neurons=8, n_types=2, image_size=20, n_train=32, n_validation=8, n_test=8)
    pretrained = ks.build_model(8, (20, 20), core={"type": "stacked_conv2d", "channels": 4, "kernel_sizes": [9, 3]})
    fresh = fresh_copy(pretrained)
    assert not np.array_equal(fresh.core.get_weights()[0], pretrained.core.get_weights()[0])
    results = str(tmp_path / "fits.json")
    settings = dict(n_neurons=4, max_epochs=1, log=lambda _: None)
    rows = transfer_learning_curve(pretrained, source, train_sizes=(16, 32), seeds=(1, 2), results_path=results, **settings)
    assert [row["n_train"] for row in rows] == [16, 32] and rows[0]["seeds"] == [1, 2]
    for row in rows:
        for label in ("transferred", "fresh"):
            values = row[f"fev_{label}_per_seed"]
            assert len(values) == 2 and len(row[f"epochs_{label}_per_seed"]) == 2 and np.all(np.isfinite(values))
            assert row[f"fev_{label}"] == pytest.approx(np.mean(values))
            assert row[f"fev_{label}_std"] == pytest.approx(np.std(values, ddof=1))
            assert (row[f"fev_{label}_min"], row[f"fev_{label}_max"]) == (min(values), max(values))
    assert "±" in format_curve(rows) and len(format_curve(rows).splitlines()) == 3
    # A fit does not depend on the fits before it: seed 2 at 32 images, alone.
    alone = transfer_learning_curve(pretrained, source, train_sizes=(32,), seeds=2, **settings)
    assert alone[0]["fev_transferred"] == pytest.approx(rows[1]["fev_transferred_per_seed"][1], abs=1e-6)
    assert alone[0]["fev_fresh"] == pytest.approx(rows[1]["fev_fresh_per_seed"][1], abs=1e-6)
    assert alone[0]["fev_fresh_std"] == 0.0
    # A rerun with the results file reuses its fits instead of fitting again.
    lines = []
    again = transfer_learning_curve(
        pretrained, source, train_sizes=(16, 32), seeds=(1, 2), results_path=results, **{**settings, "log": lines.append}
    )
    assert again == rows and all("fits.json" in line for line in lines if "seed " in line)
    with pytest.raises(ValueError, match="other settings"):
        transfer_learning_curve(pretrained, source, train_sizes=(16,), seeds=1, results_path=results, n_neurons=4,
                                max_epochs=2, log=lambda _: None)


def test_locate_new_neurons_asks_the_core_where_each_neuron_reads():
    from keras_sysid.transfer import locate_new_neurons

    # With an identity core the features are the standardised pixels, so each
    # neuron, driven by one pixel, must be found on that pixel.
    model = ks.build_model(3, (10, 12), core={"type": "identity"}, readout={"type": "fixed_mask"}, image_mean=5.0, image_std=2.0)
    rng = np.random.default_rng(0)
    images = rng.normal(5.0, 2.0, (150, 10, 12, 1)).astype("float32")
    true = np.array([[1, 2], [8, 10], [4, 6]])
    responses = np.stack([images[:, r, c, 0] for r, c in true], axis=1) + rng.normal(0, 1.0, (150, 3))
    found = locate_new_neurons(model, images, responses)
    np.testing.assert_allclose(found, true, atol=0.5)
    model.readout.set_positions(found)
    assert model.feature_maps(images[:7], batch_size=4).shape == (7, 10, 12, 1)
    with pytest.raises(ValueError, match="responses"):
        locate_new_neurons(model, images, responses[:-1])
