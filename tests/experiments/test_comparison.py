import dataclasses
import json
import os

import numpy as np
import pytest

from keras_sysid import evaluation
from keras_sysid.experiments import comparison


def test_retinotopy_of_a_rotated_linear_map_is_perfect():
    rng = np.random.default_rng(0)
    cortex = rng.uniform(-300, 300, (200, 3))
    rf = np.column_stack([0.02 * cortex[:, 0] + 0.01 * cortex[:, 1] + 10, -0.03 * cortex[:, 1] + 30])
    result = evaluation.retinotopy(rf, cortex)
    assert result["r_row"] == pytest.approx(1.0) and result["r_column"] == pytest.approx(1.0)
    assert result["pearson"]["column"]["cortex_y"] == pytest.approx(-1.0)
    shuffled = evaluation.retinotopy(rng.permutation(rf), cortex)
    assert abs(shuffled["r_row"]) < 0.3


def test_synthetic_types_runs_every_readout_and_resumes(tmp_path):
    settings = comparison.SyntheticTypesSettings(
        n_types=(2,), neurons_per_type=3, image_size=20, n_train=64, max_epochs=1, patience=1
    )
    messages = []
    rows = comparison.run_synthetic_types(str(tmp_path), settings=settings, verbose=0, log=messages.append)
    assert [row["readout"] for row in rows] == ["factorized", "fixed_mask", "fully_connected"]
    assert all(row["n_neurons"] == 6 and np.isfinite(row["fev"]) for row in rows)
    assert os.path.exists(tmp_path / "synthetic_types.csv") and os.path.exists(tmp_path / "synthetic_types.png")
    with open(tmp_path / "synthetic_types.json") as file:
        assert len(json.load(file)) == 3
    messages.clear()
    comparison.run_synthetic_types(str(tmp_path), settings=settings, verbose=0, log=messages.append)
    assert sum("already fitted" in m for m in messages) == 3


def test_synthetic_types_refuses_fits_of_other_settings_unless_overwriting(tmp_path):
    settings = comparison.SyntheticTypesSettings(
        n_types=(2,), neurons_per_type=3, image_size=20, n_train=64, max_epochs=1, patience=1
    )
    comparison.run_synthetic_types(str(tmp_path), readouts=("factorized",), settings=settings, verbose=0,
                                   log=lambda m: None)
    path = str(tmp_path / "synthetic_types" / "2_factorized.json")
    with open(path) as file:
        assert json.load(file)["key"] == json.loads(json.dumps(comparison.synthetic_types_key(2, "factorized", settings)))
    # More type counts in the run do not change the 2-type fit: reused.
    wider = dataclasses.replace(settings, n_types=(2, 3))
    assert comparison.synthetic_types_key(2, "factorized", wider) == comparison.synthetic_types_key(2, "factorized", settings)
    reseeded = dataclasses.replace(settings, seed=1)
    with pytest.raises(comparison.StoredRunMismatch, match="settings.seed: stored 0, this run 1") as raised:
        comparison.run_synthetic_types(str(tmp_path), readouts=("factorized",), settings=reseeded, verbose=0,
                                       log=lambda m: None)
    assert path in str(raised.value)
    messages = []
    rows = comparison.run_synthetic_types(str(tmp_path), readouts=("factorized",), settings=reseeded, verbose=0,
                                          log=messages.append, overwrite=True)
    assert any(m.startswith("overwriting") for m in messages) and rows[0]["key"]["settings"]["seed"] == 1


def test_format_table_aligns_columns():
    text = comparison.format_table([{"model": "lnp", "corr_single": 0.1234}, {"model": "factorized", "corr_single": 0.3}],
                                   ("model", "corr_single"))
    lines = text.splitlines()
    assert lines[2].startswith("lnp ") and "0.123" in lines[2] and "0.300" in lines[3]
