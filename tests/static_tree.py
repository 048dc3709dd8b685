"""Writes tiny ``static*-preproc0`` trees (folder or zip) for the tests."""

import os
import shutil
import zipfile

import numpy as np

N_NEURONS = 5
IMAGE_SHAPE = (20, 24)
# 12 train, 4 validation, 3 test images x 2 repeats.
TIERS = ["train"] * 12 + ["validation"] * 4 + ["test"] * 6
IMAGE_IDS = list(range(100, 116)) + [7, 8, 9, 7, 8, 9]


def write_tree(parent, name="static1-1-1-preproc0", seed=0, n_neurons=N_NEURONS, image_shape=IMAGE_SHAPE, zipped=False):
    """Writes the tree under ``parent/name`` (and ``parent/name.zip`` when zipped).

    Responses are a noisy rectified linear function of the pixel mean in a
    neuron-specific patch, so models have something to learn.

    Returns:
        The folder (or zip) path.
    """
    rng = np.random.default_rng(seed)
    root = os.path.join(parent, name)
    n_trials = len(TIERS)
    for folder in ("images", "responses", "behavior", "pupil_center"):
        os.makedirs(os.path.join(root, "data", folder), exist_ok=True)
    images = {}
    for index, image_id in enumerate(IMAGE_IDS):
        if image_id not in images:
            images[image_id] = rng.uniform(0, 255, (1, *image_shape)).astype("float32")
        image = images[image_id]
        drive = np.array([image[0, 2 * n: 2 * n + 6, 3 * n: 3 * n + 6].mean() / 255.0 for n in range(n_neurons)])
        responses = (np.maximum(drive + 0.05 * rng.standard_normal(n_neurons), 0) * (1 + np.arange(n_neurons))).astype("float32")
        np.save(os.path.join(root, "data", "images", f"{index}.npy"), image)
        np.save(os.path.join(root, "data", "responses", f"{index}.npy"), responses)
        np.save(os.path.join(root, "data", "behavior", f"{index}.npy"), rng.standard_normal(3).astype("float32"))
        np.save(os.path.join(root, "data", "pupil_center", f"{index}.npy"), rng.standard_normal(2).astype("float32"))
    trials = os.path.join(root, "meta", "trials")
    neurons = os.path.join(root, "meta", "neurons")
    stats = os.path.join(root, "meta", "statistics", "responses", "all")
    for folder in (trials, neurons, stats):
        os.makedirs(folder, exist_ok=True)
    np.save(os.path.join(trials, "tiers.npy"), np.array(TIERS))
    np.save(os.path.join(trials, "frame_image_id.npy"), np.array(IMAGE_IDS, dtype="int64"))
    np.save(os.path.join(trials, "trial_idx.npy"), np.arange(n_trials) + 1000)
    np.save(os.path.join(neurons, "unit_ids.npy"), np.arange(1, n_neurons + 1, dtype="uint16"))
    np.save(os.path.join(neurons, "area.npy"), np.array(["V1"] * n_neurons))
    np.save(os.path.join(neurons, "cell_motor_coordinates.npy"), rng.uniform(-300, 300, (n_neurons, 3)))
    np.save(os.path.join(stats, "std.npy"), np.ones(n_neurons, "float32"))
    if zipped:
        shutil.make_archive(root, "zip", root_dir=parent, base_dir=name)
        shutil.rmtree(root)
        return root + ".zip"
    return root


def rezip(zipped, target, replace):
    """Copies ``zipped`` to ``target``, each member whose name ends with a key of ``replace`` swapped.

    ``replace`` maps a name's ending to ``(payload bytes, zip compression method)``.

    Returns:
        ``target``.
    """
    with zipfile.ZipFile(zipped) as source, zipfile.ZipFile(target, "w") as copy:
        for item in source.infolist():
            ending = next((key for key in replace if item.filename.endswith(key)), None)
            if ending is None:
                copy.writestr(item, source.read(item))
            else:
                payload, method = replace[ending]
                copy.writestr(item.filename, payload, compress_type=method)
    return str(target)
