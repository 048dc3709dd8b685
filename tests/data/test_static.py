import io
import os
import shutil
import zipfile

import numpy as np
import pytest
from static_tree import IMAGE_SHAPE, N_NEURONS, TIERS, rezip, write_tree

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
    assert from_zip.provenance == {"format": "static", "path": zipped}
    assert load_static(folder, tiers=["test"]).provenance == {"format": "static", "path": folder}
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


def test_two_files_for_one_trial_are_refused(tree):
    os.rename(os.path.join(tree, "data/responses/7.npy"), os.path.join(tree, "data/responses/007.npy"))
    # One file per trial, zero-padded or not: trial 7 is 007.npy.
    np.testing.assert_array_equal(load_static(tree).responses[7], np.load(os.path.join(tree, "data/responses/007.npy")))
    shutil.copy(os.path.join(tree, "data/responses/007.npy"), os.path.join(tree, "data/responses/7.npy"))
    with pytest.raises(RecordingError, match=r"^\S+/data/responses/007.npy and \S+/data/responses/7.npy: both are "
                                             r"trial 7; keep one of them\.$"):
        load_static(tree)


def _header_only(shape, dtype="<f4"):
    """A .npy header declaring ``shape`` followed by 16 bytes of data."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buffer.getvalue() + bytes(16)


def _npy(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "payload, message",
    [
        # 40 GB declared, 16 bytes present: refused before numpy allocates (it raised MemoryError).
        (_header_only((100000, 100000)), r"responses/4.npy: its header declares float32 data of shape "
                                         r"\(100000, 100000\) \(40,000,000,000 bytes\), but the file holds 16 bytes "
                                         r"after the header; truncated or damaged .npy file\.$"),
        (_npy(np.ones(N_NEURONS, "float32"))[:-4], r"responses/4.npy: its header declares float32 data of shape "
                                                   r"\(5,\) \(20 bytes\), but the file holds 16 bytes"),
        (_npy(np.ones(N_NEURONS, "float32")) + b"tail", r"responses/4.npy: .* \(20 bytes\), but the file holds 24 "
                                                        r"bytes"),
        (_npy(np.ones(N_NEURONS, "float32"))[:30], r"responses/4.npy: unreadable .npy header \(EOF"),
    ],
    ids=["40 GB declared", "data cut", "bytes after the data", "header cut"],
)
@pytest.mark.parametrize("zipped", [False, True])
def test_npy_header_that_disagrees_with_the_file_is_refused(tmp_path, payload, message, zipped):
    tree = write_tree(str(tmp_path), zipped=zipped)
    if zipped:
        tree = rezip(tree, tmp_path / "damaged.zip", {"data/responses/4.npy": (payload, zipfile.ZIP_DEFLATED)})
    else:
        with open(os.path.join(tree, "data/responses/4.npy"), "wb") as file:
            file.write(payload)
    with pytest.raises(RecordingError, match=message):
        load_static(tree)


def test_zip_members_that_would_unpack_to_too_much_are_refused(tmp_path, monkeypatch):
    from keras_sysid.data.readers import static

    zipped = write_tree(str(tmp_path), zipped=True)
    # 5 MiB of zeros deflate ~1000:1 (zlib's ratio varies a little, so the test's limit is 100:1); the member is
    # refused from the zip's directory, before it is unpacked.
    monkeypatch.setattr(static, "MAX_RATIO", 100)
    bomb = rezip(zipped, tmp_path / "bomb.zip", {"data/responses/3.npy": (_npy(np.zeros(5 * 2**18, "float32")),
                                                                          zipfile.ZIP_DEFLATED)})
    with pytest.raises(RecordingError, match=r"bomb.zip:static1-1-1-preproc0/data/responses/3.npy: would unpack "
                                             r"[\d,]+ bytes into 5,243,008 \(ratio \d+:1, over the limit of "
                                             r"100:1 for members over 4,194,304 bytes\); refusing to unpack it"):
        load_static(bomb)
    monkeypatch.setattr(static, "MAX_RATIO", 1000)
    bzip2 = rezip(zipped, tmp_path / "bzip2.zip", {"data/images/2.npy": (_npy(np.ones((1, 4, 4))), zipfile.ZIP_BZIP2)})
    with pytest.raises(RecordingError, match=r"bzip2.zip:static1-1-1-preproc0/data/images/2.npy: is compressed with "
                                             r"zip method 12; only stored and deflated members"):
        load_static(bzip2)
    monkeypatch.setattr(static, "MAX_MEMBER_BYTES", 2000)  # an image is 2,048 bytes, every other file less
    with pytest.raises(RecordingError, match=r"zip:static1-1-1-preproc0/data/images/\d+.npy: declares 2,048 bytes "
                                             r"unpacked, over the limit of 2,000 bytes per member; refusing"):
        load_static(zipped)
    monkeypatch.setattr(static, "MAX_MEMBER_BYTES", 2**30)
    monkeypatch.setattr(static, "MAX_TOTAL_BYTES", 10_000)
    with pytest.raises(RecordingError, match=r"zip:static1-1-1-preproc0/\S+.npy: brings the data set's members to "
                                             r"[\d,]+ bytes unpacked, over the limit of 10,000 bytes; refusing"):
        load_static(zipped)
    monkeypatch.setattr(static, "MAX_TOTAL_BYTES", 10_000_000)
    assert load_static(zipped).n_trials == len(TIERS)


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
