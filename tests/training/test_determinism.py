"""A seeded fit gives bitwise the same result whatever ran before it in the process.

Each case runs in a fresh subprocess, as a user's script would: once as the
first fit of the process, once after fits of other configs (other readouts,
seeds and data), which advance Keras' layer-name counters, the Python, NumPy
and TensorFlow random states and the global ``SeedGenerator``.
"""

import json
import os
import subprocess
import sys
import textwrap

from static_tree import write_tree

_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import keras
    keras.mixed_precision.set_global_policy("float32")
    from keras_sysid.data import load_static
    from keras_sysid.experiments import presets, rivals
    from keras_sysid.experiments.presets import SyntheticRunConfig
    from keras_sysid.recipes.synthetic import run_synthetic

    steps, tree = json.loads(sys.argv[1]), sys.argv[2]
    data = load_static(tree)
    results = {}
    for step in steps:
        if step["kind"] == "synthetic":
            _, info = run_synthetic(SyntheticRunConfig(**step["config"]), verbose=0)
            results[step["label"]] = {key: info[key] for key in ("fev", "corr_test", "best_val_loss", "final_loss", "epochs")}
        else:
            settings = presets.FitSettings(max_epochs=3, batch_size=4, seed=step["seed"])
            model, info = rivals.fit_rival(step["rival"], data, settings, verbose=0)
            prediction = model.predict(data.images, verbose=0)
            results[step["label"]] = {"best_val_correlation": info["best_val_correlation"], "epochs": info["epochs"],
                                      "prediction": prediction.ravel().tolist()}
    print(json.dumps(results))
    """
)

_TINY = dict(n_neurons=20, n_types=2, image_size=20, n_train=256, epochs=3, patience=2)
TARGET = {"kind": "synthetic", "label": "target", "config": dict(_TINY, ground_truth="cnn", readout="factorized", seed=3)}
RIVAL = {"kind": "rival", "label": "rival", "rival": "gaussian", "seed": 5}
# Another config (ground truth, readout, seed); one epoch is enough to move every global state.
OTHER = {"kind": "synthetic", "label": "other",
         "config": dict(_TINY, n_train=128, epochs=1, ground_truth="dog", readout="gaussian", seed=7)}


def _run(steps, tree):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, "-c", _SCRIPT, json.dumps(steps), tree],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_seeded_fits_do_not_depend_on_earlier_fits_in_the_process(tmp_path):
    tree = write_tree(str(tmp_path))
    # First process: the synthetic target alone, then the rival after it.
    first = _run([TARGET, RIVAL], tree)
    # Second process: the rival alone, then the target after two fits of other configs
    # (the rival: Gaussian readout, seed 5, other data; a synthetic Gaussian readout, seed 7).
    second = _run([RIVAL, OTHER, TARGET], tree)
    assert first["target"] == second["target"]  # bitwise: floats round-trip exactly through JSON
    assert first["rival"] == second["rival"]
    assert second["other"] != second["target"]
