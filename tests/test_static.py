import os
import shutil
import zipfile

import numpy as np
import pytest
from static_tree import IMAGE_SHAPE, N_NEURONS, TIERS, write_tree

from keras_sysid.data import RecordingError, load_static


@pytest.fixture
def tree(tmp_path):
    return write_tree(str(tmp_path))


def test_reads_folder_zip_and_parent_folder_alike(tmp_path):
    folder = write_tree(str(tmp_path / "a"))
    zipped = write_tree(str(tmp_path / "b"), zipped=True)
    from_folder = load_static(folder)
    from_zip = load_static(zipped)
    from_parent = load_static(str(tmp_path / "a"))
    assert from_folder.images.shape == (len(TIERS), *IMAGE_SHAPE, 1)
    assert from_folder.responses.shape == (len(TIERS), N_NEURONS)
    assert from_folder.behavior.shape == (len(TIERS), 3) and from_folder.pupil_center.shape == (len(TIERS), 2)
    assert from_folder.name == from_zip.name == "static1-1-1-preproc0"
    for other in (from_zip, from_parent):
        np.testing.assert_array_equal(other.images, from_folder.images)
        np.testing.assert_array_equal(other.responses, from_folder.responses)
        np.testing.assert_array_equal(other.tiers, from_folder.tiers)
    assert from_folder.neurons["cell_motor_coordinates"].shape == (N_NEURONS, 3)
    assert from_folder.trials["trial_idx"].shape == (len(TIERS),)


def test_file_i_is_trial_i_even_when_names_sort_as_strings(tree):
    data = load_static(tree)
    np.testing.assert_array_equal(data.images[10, ..., 0], np.load(os.path.join(tree, "data/images/10.npy"))[0])
    np.testing.assert_array_equal(data.responses[2], np.load(os.path.join(tree, "data/responses/2.npy")))


def test_tier_selection_and_repeat_groups(tree):
    data = load_static(tree)
    images, responses = data.tier("validation")
    assert images.shape[0] == responses.shape[0] == 4
    groups = data.repeat_groups("test")
    assert [len(g) for g in groups] == [2, 2, 2]
    for group in groups:
        assert len(set(data.image_ids[group])) == 1
        np.testing.assert_array_equal(data.images[group[0]], data.images[group[1]])
    test_images, _ = data.tier("test")
    for group, positions in zip(groups, data.repeat_positions("test")):  # the same trials, as rows of the tier
        np.testing.assert_array_equal(test_images[positions], data.images[group])
    only_test = load_static(tree, tiers=["test"])
    assert only_test.n_trials == 6 and set(only_test.tiers) == {"test"}
    with pytest.raises(ValueError, match="no 'train' trials"):
        only_test.indices("train")
    with pytest.raises(ValueError, match="Unknown tier"):
        data.indices("training")


def test_statistics_come_from_the_train_tier(tree):
    data = load_static(tree)
    train_images, train_responses = data.tier("train")
    mean, std = data.image_statistics()
    assert mean == pytest.approx(train_images.mean(), rel=1e-6)
    assert std == pytest.approx(train_images.std(), rel=1e-5)
    np.testing.assert_allclose(data.response_scale(), train_responses.std(axis=0), rtol=1e-5)


def test_response_scale_floors_silent_neurons(tree):
    for index in range(len(TIERS)):
        path = os.path.join(tree, "data/responses", f"{index}.npy")
        responses = np.load(path)
        responses[0] = 0.0
        np.save(path, responses)
    data = load_static(tree)
    std = data.tier("train")[1].std(axis=0)
    scale = data.response_scale()
    assert std[0] == 0
    assert scale[0] == pytest.approx(0.01 * np.median(std), rel=1e-5)
    np.testing.assert_allclose(scale[1:], std[1:], rtol=1e-5)


def test_dataset_scales_batches_and_shuffles_only_train(tree):
    data = load_static(tree)
    scale = data.response_scale()
    batches = list(data.dataset("validation", batch_size=3, response_scale=scale))
    assert [b[0].shape[0] for b in batches] == [3, 1]
    images = np.concatenate([b[0].numpy() for b in batches])
    responses = np.concatenate([b[1].numpy() for b in batches])
    expected_images, expected_responses = data.tier("validation")
    np.testing.assert_array_equal(images, expected_images)
    np.testing.assert_allclose(responses, expected_responses / scale, rtol=1e-6)
    standardised = next(iter(data.dataset("test", batch_size=6, standardize_images=(100.0, 50.0))))[0].numpy()
    np.testing.assert_allclose(standardised, (data.tier("test")[0] - 100.0) / 50.0, rtol=1e-5)
    first = [b[1].numpy() for b in data.dataset("train", batch_size=12, seed=1)][0]
    assert not np.array_equal(first, data.tier("train")[1])
    with pytest.raises(ValueError, match="response_scale must have shape"):
        data.dataset("train", response_scale=np.ones(3))


def test_epoch_stream_scales_responses_and_covers_each_epoch_once(tree):
    data = load_static(tree)
    scale = data.response_scale()
    stream = data.epoch_stream("train", batch_size=5, seed=3, response_scale=scale)
    images, responses = data.tier("train")
    batches = list(stream.dataset().take(2 * stream.steps_per_epoch))
    for epoch in range(2):
        epoch_batches = batches[epoch * stream.steps_per_epoch : (epoch + 1) * stream.steps_per_epoch]
        seen = np.concatenate([b[1].numpy() for b in epoch_batches])
        # Every trial exactly once per epoch, scaled; rows sorted to ignore the order.
        np.testing.assert_allclose(np.sort(seen, axis=0), np.sort(responses / scale, axis=0), rtol=1e-6)
    first, second = (np.concatenate([b[1].numpy() for b in batches[i * stream.steps_per_epoch:][:2]]) for i in (0, 1))
    assert not np.array_equal(first, second)  # a new order each epoch
    # Starting at epoch 1 gives exactly epoch 1's batches.
    resumed = list(stream.dataset(first_epoch=1).take(stream.steps_per_epoch))
    for a, b in zip(resumed, batches[stream.steps_per_epoch :]):
        np.testing.assert_array_equal(a[0].numpy(), b[0].numpy())
    with pytest.raises(ValueError, match="response_scale must have shape"):
        data.epoch_stream("train", response_scale=np.ones(3))


def _edit(tree, relative, value):
    np.save(os.path.join(tree, relative), value)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda t: os.remove(os.path.join(t, "data/responses/3.npy")), r"data/responses.*missing \(first: 3.npy\)"),
        (lambda t: _edit(t, "data/images/22.npy", np.zeros((1, *IMAGE_SHAPE), "float32")), r"data/images.*1 unexpected \(first: 22.npy\)"),
        (lambda t: _edit(t, "data/images/5.npy", np.zeros((1, 4, 4), "float32")), r"images/5.npy: has shape \(1, 4, 4\)"),
        (lambda t: _edit(t, "data/responses/4.npy", np.full(N_NEURONS, np.nan, "float32")), r"data/responses: NaN or inf in trial 4"),
        (lambda t: _edit(t, "data/images/6.npy", np.full((1, *IMAGE_SHAPE), np.inf, "float32")), r"data/images: NaN or inf in trial 6"),
        (lambda t: _edit(t, "meta/trials/tiers.npy", np.array(["train"] * 21 + ["holdout"])), r"unknown tier names \['holdout'\]"),
        (lambda t: _edit(t, "meta/trials/tiers.npy", np.array(TIERS[:-1])), r"has 21 trial files.*lists 21|frame_image_id.npy: has 22 entries"),
        (lambda t: _edit(t, "meta/neurons/unit_ids.npy", np.arange(3)), r"unit_ids.npy: describes 3 neurons.*holds 5"),
        (lambda t: _edit(t, "data/behavior/2.npy", np.array([{"a": 1}], dtype=object)), r"behavior/2.npy: holds Python objects"),
        (lambda t: open(os.path.join(t, "data/pupil_center/1.npy"), "wb").write(b"garbage"), r"pupil_center/1.npy: unreadable"),
        (lambda t: _edit(t, "data/behavior/9.npy", np.array([1.0, np.nan, 0.0], "float32")), r"data/behavior: NaN or inf in trial 9"),
        (lambda t: _edit(t, "data/behavior/3.npy", np.zeros(4, "float32")), r"behavior/3.npy: has shape \(4,\), but data/behavior/0.npy has \(3,\)"),
        (lambda t: os.remove(os.path.join(t, "data/pupil_center/8.npy")), r"data/pupil_center.*missing \(first: 8.npy\)"),
        (lambda t: _edit(t, "data/pupil_center/2.npy", np.array([np.inf, 1.0])), r"data/pupil_center: NaN or inf in trial 2"),
        (lambda t: os.remove(os.path.join(t, "meta/trials/tiers.npy")), r"meta/trials/tiers.npy is missing"),
        (lambda t: os.remove(os.path.join(t, "meta/trials/frame_image_id.npy")), r"frame_image_id.npy: file is missing"),
    ],
)
def test_each_problem_names_the_file(tree, damage, message):
    damage(tree)
    with pytest.raises(RecordingError, match=message):
        load_static(tree)


def test_damaged_zip_member_is_named(tmp_path):
    zipped = write_tree(str(tmp_path), zipped=True)
    rewritten = str(tmp_path / "bad.zip")
    with zipfile.ZipFile(zipped) as source, zipfile.ZipFile(rewritten, "w") as target:
        for item in source.infolist():
            payload = source.read(item)
            if item.filename.endswith("data/responses/7.npy"):
                payload = payload[:20]
            target.writestr(item, payload)
    with pytest.raises(RecordingError, match=r"bad.zip:static1-1-1-preproc0/data/responses/7.npy|responses/7.npy: unreadable"):
        load_static(rewritten)


def test_missing_path_and_non_zip_file(tmp_path):
    with pytest.raises(RecordingError, match="no such file or folder"):
        load_static(str(tmp_path / "nowhere.zip"))
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip")
    with pytest.raises(RecordingError, match="not a readable zip file"):
        load_static(str(junk))


def test_two_data_sets_in_one_folder_is_ambiguous(tmp_path):
    write_tree(str(tmp_path), name="static1-1-1-preproc0")
    write_tree(str(tmp_path), name="static2-2-2-preproc0")
    with pytest.raises(RecordingError, match="several data sets"):
        load_static(str(tmp_path))
    shutil.rmtree(tmp_path / "static2-2-2-preproc0")
    assert load_static(str(tmp_path)).n_neurons == N_NEURONS


def test_fingerprint_is_of_content_not_of_source_or_name(tmp_path):
    folder = write_tree(str(tmp_path / "a"))
    zipped = write_tree(str(tmp_path / "b"), zipped=True)
    renamed = write_tree(str(tmp_path / "c"), name="static9-9-9-preproc0")
    data = load_static(folder)
    fingerprint = data.fingerprint()
    assert len(fingerprint) == 64 and int(fingerprint, 16) >= 0
    assert load_static(zipped).fingerprint() == fingerprint
    assert load_static(str(tmp_path / "a")).fingerprint() == fingerprint
    assert load_static(renamed).fingerprint() == fingerprint
    assert data.fingerprint() is fingerprint  # computed once
    # Any changed value changes it: one response, one metadata entry.
    path = os.path.join(folder, "data/responses/7.npy")
    responses = np.load(path)
    responses[3] = np.nextafter(responses[3], np.float32(np.inf))
    np.save(path, responses)
    changed = load_static(folder).fingerprint()
    assert changed != fingerprint
    path = os.path.join(folder, "meta/trials/trial_idx.npy")
    np.save(path, np.load(path)[::-1])
    assert load_static(folder).fingerprint() not in (fingerprint, changed)
    # A selection of trials is other data.
    assert load_static(zipped, tiers=["test"]).fingerprint() != fingerprint


def test_model_inputs_and_pipelines_carry_behaviour(tree):
    data = load_static(tree)
    train = data.indices("train")
    np.testing.assert_array_equal(data.model_inputs("train"), data.images[train])
    names = ("images", "behavior", "pupil_center")
    inputs = data.model_inputs("train", names)
    assert sorted(inputs) == sorted(names)
    np.testing.assert_array_equal(inputs["behavior"], data.behavior[train])
    (batch, responses), = data.dataset("validation", batch_size=64, inputs=names).take(1)
    assert batch["behavior"].shape == (4, 3) and batch["pupil_center"].shape == (4, 2) and responses.shape == (4, N_NEURONS)
    stream = data.epoch_stream("train", batch_size=4, inputs=names)
    for batch, _ in stream.dataset().take(stream.steps_per_epoch):
        # Each batch's behaviour belongs to its own images.
        for image, behavior in zip(batch["images"].numpy(), batch["behavior"].numpy()):
            trial = train[np.flatnonzero((data.images[train] == image).all(axis=(1, 2, 3)))[0]]
            np.testing.assert_array_equal(behavior, data.behavior[trial])


def test_model_inputs_name_the_missing_variable(tree):
    shutil.rmtree(os.path.join(tree, "data", "behavior"))
    data = load_static(tree)
    assert data.behavior is None and data.pupil_center is not None
    with pytest.raises(RecordingError, match=r"has no behavior \(no data/behavior/ files\)"):
        data.model_inputs("test", ("images", "behavior"))
    assert data.model_inputs("test", ("images", "pupil_center"))["pupil_center"].shape == (6, 2)
