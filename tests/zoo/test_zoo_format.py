import os

import numpy as np
import pytest

import keras_sysid as ks
from keras_sysid import zoo


@pytest.fixture
def entry(tmp_path):
    model = ks.build_model(
        6, (20, 24), core={"type": "stacked_conv2d", "channels": 4, "kernel_sizes": [5, 3]},
        readout={"type": "gaussian"}, image_mean=100.0, image_std=50.0,
    )
    model.set_response_scale(np.arange(1, 7))
    folder = str(tmp_path / "tiny")
    zoo.save(model, folder, {"name": "tiny", "units": "test"}, "# tiny\n")
    return model, folder


def test_saved_entry_loads_verified_and_predicts_the_same(entry):
    model, folder = entry
    images = np.random.default_rng(0).uniform(0, 255, (3, 20, 24, 1)).astype("float32")
    loaded = zoo.load(folder)
    np.testing.assert_allclose(loaded.predict(images, verbose=0), model.predict(images, verbose=0), rtol=1e-6)
    facts = zoo.metadata(folder)
    assert facts.pop("provenance")["n_neurons"] == 6  # filled in by save (tests/zoo/test_presets.py)
    assert facts.pop("architecture")["readout"]["n_neurons"] == 6  # also filled in by save
    assert facts == {"name": "tiny", "units": "test"}
    assert sorted(os.listdir(folder)) == ["README.md", "SHA256SUMS", "config.json", "metadata.json", "model.weights.h5"]


@pytest.mark.parametrize("name", ["config.json", "model.weights.h5", "metadata.json", "README.md"])
def test_altered_truncated_or_missing_files_are_named(entry, name):
    _, folder = entry
    path = os.path.join(folder, name)
    with open(path, "rb") as file:
        payload = file.read()
    with open(path, "wb") as file:
        file.write(payload[: len(payload) // 2])
    with pytest.raises(zoo.ZooError, match=f"{name}: checksum mismatch"):
        zoo.load(folder)
    os.remove(path)
    with pytest.raises(zoo.ZooError, match=f"{name}: file is missing"):
        zoo.load(folder)


def test_unknown_name_and_missing_checksums(entry, tmp_path):
    _, folder = entry
    with pytest.raises(zoo.ZooError, match="neither a zoo model nor a folder"):
        zoo.load("no_such_model")
    os.remove(os.path.join(folder, "SHA256SUMS"))
    with pytest.raises(zoo.ZooError, match="SHA256SUMS: file is missing"):
        zoo.load(folder)


def test_weights_of_another_model_are_refused(entry, tmp_path):
    _, folder = entry
    other = ks.build_model(9, (20, 24), core={"type": "stacked_conv2d", "channels": 4, "kernel_sizes": [5, 3]})
    other.save_weights(os.path.join(folder, "model.weights.h5"))
    with pytest.raises(zoo.ZooError, match="weights do not fit the model"):
        zoo.load(folder, verify_checksums=False)


def test_config_naming_unregistered_code_is_refused(entry):
    _, folder = entry
    import json

    path = os.path.join(folder, "config.json")
    with open(path) as file:
        config = json.load(file)
    config["config"]["core"] = {"module": "builtins", "class_name": "eval", "config": {}, "registered_name": "eval"}
    with open(path, "w") as file:
        json.dump(config, file)
    with pytest.raises(zoo.ZooError, match="config.json: not a loadable model config"):
        zoo.load(folder, verify_checksums=False)


def test_stored_weights_are_compressed_and_a_pruned_mask_stays_exact(tmp_path):
    import h5py

    model = ks.build_model(
        300, (20, 24), core={"type": "stacked_conv2d", "channels": 4, "kernel_sizes": [5, 3]},
        readout={"type": "factorized"}, image_mean=100.0, image_std=50.0,
    )
    kept = model.readout.prune_mask(0.5)
    assert 0.0 < kept < 1.0
    folder = str(tmp_path / "sparse")
    zoo.save(model, folder, {"name": "sparse"}, "# sparse\n")
    with h5py.File(os.path.join(folder, "model.weights.h5")) as weights:
        compressions = []
        weights.visititems(lambda _, item: compressions.append(item.compression) if isinstance(item, h5py.Dataset) and item.size > 1024 else None)
    assert compressions and set(compressions) == {"gzip"}
    loaded = zoo.load(folder)
    np.testing.assert_array_equal(np.asarray(loaded.readout.mask), np.asarray(model.readout.mask))


def _reseal(folder, case=str.lower):
    """Rewrites the entry's SHA256SUMS for its files as they now are, each digest in ``case``."""
    with open(os.path.join(folder, "SHA256SUMS"), "w") as file:
        file.writelines(f"{case(zoo.sha256(os.path.join(folder, name)))}  {name}\n" for name in zoo._CHECKED_FILES)


def test_checksums_in_upper_case_hex_verify_and_malformed_lines_are_refused(entry):
    model, folder = entry
    _reseal(folder, str.upper)  # hex is case-insensitive: the same digests
    zoo.verify(folder)
    assert zoo.load(folder).n_neurons == model.n_neurons
    listing = os.path.join(folder, "SHA256SUMS")
    with open(listing) as file:
        lines = file.read().splitlines()
    for bad, what in ((lines[0][:40] + lines[0][64:], "a short digest"), ("Z" + lines[0][1:], "a non-hex digit"),
                      (lines[0].replace("  ", " ", 1), "one space"), (lines[0][:64], "no file name")):
        with open(listing, "w") as file:
            file.write("\n".join([lines[1], bad, *lines[2:]]) + "\n")
        with pytest.raises(zoo.ZooError, match=r"SHA256SUMS: line 2 is not '<64 hex digits>  <file name>'") as error:
            zoo.verify(folder)
        assert repr(bad.strip()) in str(error.value), what
    # The same file twice, with different digests: refused, not the last one believed.
    with open(listing, "w") as file:
        file.write("\n".join([*lines, "0" * 64 + "  config.json"]) + "\n")
    with pytest.raises(zoo.ZooError, match="line 5 gives config.json a second, different checksum"):
        zoo.verify(folder)


def _zoo_of(tmp_path, monkeypatch, folder, image_shapes):
    """A zoo (in place of the shipped one) of copies of ``folder``, one per name, each with its metadata's image_shape."""
    import json
    import pathlib
    import shutil

    root = tmp_path / "zoo"
    for name, image_shape in image_shapes.items():
        shutil.copytree(folder, root / name)
        path = root / name / "metadata.json"
        facts = json.loads(path.read_text())
        for stated in (facts, facts["provenance"]):
            stated.pop("image_shape", None)
            if image_shape != "missing":
                stated["image_shape"] = image_shape
        path.write_text(json.dumps(facts))
        _reseal(str(root / name))
    monkeypatch.setattr(zoo, "_shipped_root", lambda: pathlib.Path(root))
    return root


@pytest.mark.parametrize("image_shape", ["20x24", [1, 20, 24, 1, 1], 20, [20, 0, 1], [20.0, 24.0]])
def test_zoo_list_lists_the_good_entries_and_names_one_with_a_bad_image_shape(entry, tmp_path, monkeypatch, capsys,
                                                                              image_shape):
    from keras_sysid.cli import zoo as zoo_command

    root = _zoo_of(tmp_path, monkeypatch, entry[1], {"tiny_bad": image_shape, "tiny_good": [20, 24],
                                                     "tiny_stated_nowhere": "missing"})
    with pytest.raises(SystemExit) as exit_status:
        zoo_command.main(["zoo", "list"])
    assert exit_status.value.code == 1
    out, err = capsys.readouterr()
    # A shape the card does not state comes from the model's config; a wrong one is named, with its file.
    assert [line.split()[0] for line in out.splitlines()] == ["tiny_good", "tiny_stated_nowhere"]
    assert err.splitlines() == [
        (f"error: zoo entry 'tiny_bad' is unusable: {root / 'tiny_bad' / 'metadata.json'}: image_shape must be "
         f"[height, width] or [height, width, channels] of positive integers; got {image_shape!r}.")]
    assert [entry["image_shape"] for entry in map(zoo.preset, ("tiny_good", "tiny_stated_nowhere"))] == [[20, 24, 1]] * 2
    with pytest.raises(zoo.ZooError, match=r"tiny_bad.metadata\.json: image_shape must be"):
        zoo.presets()
    # The card of the bad entry can still be read (it verifies).
    zoo_command.main(["zoo", "show", "tiny_bad"])
    assert capsys.readouterr().out == "# tiny\n"


def test_an_image_shape_stated_nowhere_is_named(entry, tmp_path, monkeypatch):
    import json

    root = _zoo_of(tmp_path, monkeypatch, entry[1], {"tiny": "missing"})
    config_path = root / "tiny" / "config.json"
    config = json.loads(config_path.read_text())
    del config["config"]["image_shape"]
    config_path.write_text(json.dumps(config))
    _reseal(str(root / "tiny"))
    with pytest.raises(zoo.ZooError, match=r"metadata\.json: states no image_shape, nor does config\.json"):
        zoo.preset("tiny")
