"""The zoo works from an installed wheel, not only from a checkout."""

import os
import subprocess
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_USE = """
import numpy as np, keras_sysid as ks
assert ks.__file__.startswith(SITE), ks.__file__
names = ks.zoo.list_models()
assert "synthetic_dog_groundtruth" in names, names
model = ks.zoo.load("synthetic_cnn_groundtruth")
print(model.predict(np.zeros((2, 48, 48, 1), "float32"), verbose=0).shape)
"""


def test_zoo_loads_from_a_non_editable_install(tmp_path):
    wheels, site = tmp_path / "wheels", tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(pip + ["wheel", "--no-deps", "-w", str(wheels), _ROOT], check=True, timeout=600)
    wheel = next(wheels.glob("keras_sysid-*.whl"))
    subprocess.run(pip + ["install", "--no-deps", "--no-index", "--target", str(site), str(wheel)], check=True, timeout=600)
    env = dict(os.environ, PYTHONPATH=str(site), TF_CPP_MIN_LOG_LEVEL="3")
    code = f"SITE = {str(site)!r}\n" + _USE
    result = subprocess.run([sys.executable, "-c", code], cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "(2, 1000)"


def test_every_subpackage_is_listed_for_installation():
    # A package missing from setup.cfg imports from the source tree but not once installed.
    import configparser

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    config = configparser.ConfigParser()
    config.read(os.path.join(root, "setup.cfg"))
    listed = set(config["options"]["packages"].split())
    found = {
        os.path.relpath(folder, root).replace(os.sep, ".")
        for folder, _, files in os.walk(os.path.join(root, "keras_sysid"))
        if "__init__.py" in files
    }
    assert found <= listed, f"add to setup.cfg [options] packages: {sorted(found - listed)}"
