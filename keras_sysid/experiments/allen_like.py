"""Allen-Brain-Observatory-like NWB sessions with a known truth, and the readout x recording table on them.

A lab's first recording is small: tens to hundreds of ROIs anywhere in the
visual field, a few hundred to a few thousand images, a few of them repeated
for the test tier. :func:`write_session` writes such a session as an NWB file
(pynwb), as Allen's natural-scenes sessions lay it out: an ``IndexSeries``
into an ``Images`` template, ``DfOverF`` traces at 30 Hz with timestamps, and
ROI masks whose centroids follow retinotopy. The cells are centre-surround
(ON and OFF) and Gabor-like (orientation-tuned) filters at random places over
the whole image, a softplus and a calcium transient, so a readout must find
cells far from the image centre. :func:`readout_table` fits every readout to
such sessions through the one path a user takes (``ks.data.load`` and
:func:`keras_sysid.recipes.fit_recording`) and tabulates test FEVE and
fraction of oracle.
"""

from __future__ import annotations

import dataclasses
import json
import os
from datetime import datetime, timezone

import numpy as np

SHAPE = (36, 64)  # the mouse V1 data's image size
RATE = 30.0  # imaging frames per second
PERIOD = 0.25  # each image is shown 250 ms, back to back, as in Allen's natural scenes
PLANE = 128  # imaging-plane pixels per side (Allen's are 512; smaller keeps 800 masks small)


@dataclasses.dataclass(frozen=True)
class SessionConfig:
    """One simulated session: ``n_images`` distinct training/validation images, ``n_test`` test images repeated."""

    n_rois: int = 80
    n_images: int = 600
    n_test: int = 20
    n_repeats: int = 10
    seed: int = 0
    noise: float = 0.15  # dF/F noise per imaging frame, relative to the mean transient peak

    @property
    def name(self) -> str:
        return f"allen_like_{self.n_rois}rois_{self.n_images}images_seed{self.seed}"


def natural_like_images(n_images: int, rng: np.random.Generator, shape=SHAPE) -> np.ndarray:
    """``(n, H, W)`` uint8 images with a natural scene's 1/f amplitude spectrum, mean 128."""
    fy, fx = np.meshgrid(np.fft.fftfreq(shape[0]), np.fft.fftfreq(shape[1]), indexing="ij")
    frequency = np.sqrt(fx**2 + fy**2)
    amplitude = 1.0 / np.maximum(frequency, 1.0 / max(shape))
    noise = np.fft.fft2(rng.normal(size=(n_images, *shape)))
    images = np.real(np.fft.ifft2(noise * amplitude))
    images = (images - images.mean(axis=(1, 2), keepdims=True)) / images.std(axis=(1, 2), keepdims=True)
    return np.clip(128 + 50 * images, 0, 255).astype("uint8")


def cell_filters(n_cells: int, rng: np.random.Generator, shape=SHAPE) -> tuple[np.ndarray, np.ndarray]:
    """``(N, H, W)`` linear filters and their ``(N, 2)`` (row, column) centres, anywhere in the image.

    A third each: ON centre-surround, OFF centre-surround, Gabor-like (random
    orientation and phase, 0.12 cycles per pixel); centre widths 1.5-2.5 px.
    """
    centres = rng.uniform([2, 2], [shape[0] - 3, shape[1] - 3], size=(n_cells, 2))
    rows, columns = np.mgrid[: shape[0], : shape[1]]
    dy = rows[None] - centres[:, 0, None, None]
    dx = columns[None] - centres[:, 1, None, None]
    width = rng.uniform(1.5, 2.5, size=(n_cells, 1, 1))
    squared = (dy**2 + dx**2) / width**2
    kind = np.arange(n_cells) % 3
    centre_surround = np.exp(-squared / 2) - 0.4 * np.exp(-squared / 8)
    angle = rng.uniform(0, np.pi, size=(n_cells, 1, 1))
    phase = rng.uniform(0, 2 * np.pi, size=(n_cells, 1, 1))
    gabor = np.exp(-squared / 2) * np.cos(2 * np.pi * 0.12 * (dx * np.cos(angle) + dy * np.sin(angle)) + phase)
    filters = np.where((kind == 0)[:, None, None], centre_surround,
                       np.where((kind == 1)[:, None, None], -centre_surround, gabor))
    return filters, centres


def simulate(config: SessionConfig) -> dict:
    """The session's images, presentation order, cells and true rates (seeded by ``config.seed``)."""
    rng = np.random.default_rng(config.seed)
    images = natural_like_images(config.n_images + config.n_test, rng)
    filters, centres = cell_filters(config.n_rois, rng)
    drive = np.einsum("khw,nhw->kn", (images - 128.0) / 50.0, filters)
    rates = np.logaddexp(0.0, 2.0 * drive / drive.std(axis=0) - 1.0)  # softplus, sparse like L2/3 cells
    test = np.arange(config.n_images, config.n_images + config.n_test)
    order = np.concatenate([rng.permutation(config.n_images), np.repeat(test, config.n_repeats)])
    order = order[rng.permutation(len(order))]
    return {"images": images, "order": order, "rates": rates, "centres": centres, "filters": filters}


def calcium_traces(rates: np.ndarray, order: np.ndarray, noise: float, rng: np.random.Generator):
    """``(times (F,), dF/F (F, N))``: each presentation's rate times a transient (50 ms delay, 150 ms decay)."""
    onsets = 1.0 + PERIOD * np.arange(len(order))
    times = np.arange(int((onsets[-1] + 2) * RATE)) / RATE
    trace = np.zeros((len(times), rates.shape[1]))
    frames = (onsets * RATE).astype(int)
    kernel_times = np.arange(int(0.8 * RATE)) / RATE - 0.05
    kernel = np.where(kernel_times >= 0, np.exp(-np.maximum(kernel_times, 0) / 0.15), 0.0)
    for start, image in zip(frames, order):
        stop = min(start + len(kernel), len(times))
        trace[start:stop] += rates[image] * kernel[: stop - start, None]
    trace += noise * rates.mean() * rng.normal(size=trace.shape)
    return times, onsets, trace.astype("float32")


def write_session(path, config: SessionConfig) -> dict:
    """Writes ``config``'s session to ``path`` (NWB, Allen's natural-scenes layout); returns :func:`simulate`'s truth."""
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.base import ImageReferences, Images
    from pynwb.image import GrayscaleImage, IndexSeries
    from pynwb.ophys import DfOverF, ImageSegmentation, OpticalChannel, RoiResponseSeries

    truth = simulate(config)
    rng = np.random.default_rng(config.seed + 10_000)
    times, onsets, trace = calcium_traces(truth["rates"], truth["order"], config.noise, rng)
    nwb = NWBFile(session_description="natural scenes (simulated)", identifier=config.name,
                  session_start_time=datetime(2024, 1, 1, tzinfo=timezone.utc))
    plane = nwb.create_imaging_plane(
        name="plane", optical_channel=OpticalChannel(name="green", description="GCaMP", emission_lambda=510.0),
        description="V1 L2/3", device=nwb.create_device(name="2p"), excitation_lambda=910.0,
        indicator="GCaMP6f", location="VISp", imaging_rate=RATE)
    segmentation = ImageSegmentation()
    rois = segmentation.create_plane_segmentation(description="ROIs", imaging_plane=plane, name="rois")
    # Retinotopy: the ROI's place on cortex follows its RF centre, with scatter.
    cortex = 10 + (PLANE - 20) * truth["centres"] / np.array(SHAPE) + rng.normal(scale=2.0, size=truth["centres"].shape)
    cortex = np.clip(cortex, 2, PLANE - 4).astype(int)
    for row, column in cortex:
        mask = np.zeros((PLANE, PLANE), "uint8")
        mask[row - 2:row + 3, column - 2:column + 3] = 1
        rois.add_roi(image_mask=mask)
    ophys = nwb.create_processing_module(name="ophys", description="two-photon imaging")
    ophys.add(segmentation)
    region = rois.create_roi_table_region(description="all ROIs", region=list(range(config.n_rois)))
    ophys.add(DfOverF(RoiResponseSeries(name="dff", data=trace, rois=region, unit="n.a.", timestamps=times)))
    pictures = [GrayscaleImage(name=f"image_{i}", data=image) for i, image in enumerate(truth["images"])]
    scenes = Images(name="natural_scenes_images", images=pictures,
                    order_of_images=ImageReferences(name="order_of_images", data=pictures))
    nwb.add_stimulus_template(scenes)
    nwb.add_stimulus(IndexSeries(name="natural_scenes", data=truth["order"].astype("uint32"), indexed_images=scenes,
                                 unit="N/A", timestamps=onsets))
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return truth


def session_file(config: SessionConfig, folder) -> str:
    """``folder/<name>.nwb``, written on first use (the simulation is seeded, so the file is always the same)."""
    path = os.path.join(folder, f"{config.name}.nwb")
    if not os.path.exists(path):
        os.makedirs(folder, exist_ok=True)
        partial = path[: -len(".nwb")] + ".partial.nwb"  # pynwb wants the suffix
        write_session(partial, config)
        os.replace(partial, path)
    return path


def fit_row(path, readout: str, out, core: str = "paper", max_epochs: int | None = None, log=print) -> dict:
    """Fits ``readout`` on ``core`` to the NWB session at ``path`` (``keras-sysid fit --data``'s path); its results."""
    import keras_sysid as ks

    recording = ks.data.load(path)
    recipe = ks.recipes.Recipe(ks.recipes.recording_spec(core, readout))
    if max_epochs is not None:
        recipe = recipe.with_settings(max_epochs=max_epochs)
    return ks.recipes.fit_recording(recording, recipe, out=out, verbose=0, log=log)


def readout_table(configs, readouts, folder, core: str = "paper", max_epochs: int | None = None, log=print) -> list:
    """One row per (session, readout): test FEVE, fraction of oracle, epochs and whether the fit stopped early.

    Each fit is a run folder under ``folder`` (resumed or read back when it
    exists), so the table can be built over several sessions.
    """
    rows = []
    for config in configs:
        path = session_file(config, folder)
        for readout in readouts:
            results = fit_row(path, readout, os.path.join(folder, "runs", f"{config.name}_{readout}_{core}"), core,
                              max_epochs, log=lambda line: None)
            row = {"session": config.name, "readout": readout, "feve": results["feve"],
                   "frac_oracle": results["frac_oracle"], "corr_single": results["corr_single"],
                   "epochs": results["epochs"], "stopped_early": results.get("stopped_early"),
                   "seconds": results["seconds"]}
            log(json.dumps(row))
            rows.append(row)
    return rows
