"""load_nwb on small Allen-Brain-Observatory-like NWB files written here with pynwb."""

import shutil
import warnings
from datetime import datetime, timezone

import numpy as np
import pytest

pynwb = pytest.importorskip("pynwb")
h5py = pytest.importorskip("h5py")

from keras_sysid.data import RecordingError, load_nwb  # noqa: E402

RATE = 30.0  # imaging frames per second
PERIOD = 0.25  # each image is shown for 250 ms, back to back, as in Allen's natural scenes
FIRST_ONSET = 1.013  # off the frame grid, so no window edge falls on a frame time
N_IMAGES, N_REPEATS, N_ROIS = 118, 5, 20
IMAGE_SHAPE = (18, 32)
ROI_IDS = 100 + np.arange(N_ROIS)  # ids differ from columns, so messages must name the right one
DFF = "processing/ophys/DfOverF/dff"
STIMULUS = "stimulus/presentation/natural_scenes"


def _scene(seed=0, blanks=0, order=None):
    """Images, presentation order, onsets and the traces a known model gives."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=(N_IMAGES, *IMAGE_SHAPE))
    fy, fx = np.meshgrid(np.fft.fftfreq(IMAGE_SHAPE[0]), np.fft.fftfreq(IMAGE_SHAPE[1]), indexing="ij")
    smooth = np.real(np.fft.ifft2(np.fft.fft2(noise) * np.exp(-(fx**2 + fy**2) / (2 * 0.08**2))))
    smooth = (smooth - smooth.mean()) / smooth.std()
    images = np.clip(128 + 45 * smooth, 0, 255).astype("uint8")
    if order is None:
        order = np.concatenate([rng.permutation(N_IMAGES) for _ in range(N_REPEATS)])
    if blanks:  # Allen's -1: the grey screen between images
        order = np.insert(order, rng.choice(len(order), blanks, replace=False), -1)
    onsets = FIRST_ONSET + PERIOD * np.arange(len(order))

    # Each ROI: a difference-of-Gaussians filter, a softplus, and a calcium transient.
    y, x = np.mgrid[: IMAGE_SHAPE[0], : IMAGE_SHAPE[1]]
    centres = rng.uniform([3, 3], [IMAGE_SHAPE[0] - 3, IMAGE_SHAPE[1] - 3], size=(N_ROIS, 2))
    distance2 = (y[None] - centres[:, 0, None, None]) ** 2 + (x[None] - centres[:, 1, None, None]) ** 2
    filters = np.exp(-distance2 / (2 * 2.0**2)) - 0.5 * np.exp(-distance2 / (2 * 4.0**2))
    drive = np.einsum("nhw,khw->nk", (images - 128.0) / 45.0, filters)
    drive /= drive.std(axis=0)
    rates = np.log1p(np.exp(1.5 * drive))  # (N_IMAGES, N_ROIS)

    times = np.arange(int((onsets[-1] + 2.0) * RATE)) / RATE
    trace = np.zeros((len(times), N_ROIS))
    delay, tau = 0.05, 0.1
    for onset, image in zip(onsets, order):
        if image < 0:
            continue
        lag = times - onset - delay
        near = (lag >= 0) & (lag < 6 * tau)
        trace[near] += rates[image] * np.exp(-lag[near, None] / tau)
    trace += 0.05 * rng.normal(size=trace.shape)
    running = 5 + 3 * np.sin(np.arange(len(times) * 2) / 60.0)  # at 60 Hz
    pupil = np.stack([np.cos(times / 7.0), np.sin(times / 5.0)], axis=1)
    return dict(images=images, order=order, onsets=onsets, times=times, trace=trace.astype("float32"),
                running=running, pupil=pupil, rates=rates)


def _colour(image):
    return np.stack([image, 255 - image, image // 2], axis=-1)


def _write(path, scene, layout="images", rate_based=False, fluorescence=False, n_region=N_ROIS, rgb=False,
           linked=False, other_images=None):
    """Writes ``scene`` as an NWB file in one of the stimulus layouts load_nwb reads.

    layout: "images" (IndexSeries -> Images), "template" (IndexSeries ->
    ImageSeries, the pre-NWB-2.5 layout), "frames" (an ImageSeries of the
    presented frames) or "intervals" (a TimeIntervals table with a frame column).
    linked: for "intervals", the images also as the ImageSeries
    natural_scenes_template, which the table's timeseries column points at.
    other_images: ``(M, H, W)`` uint8, another image set (ImageSeries other_images).
    """
    from pynwb import NWBHDF5IO, NWBFile, TimeSeries
    from pynwb.base import ImageReferences, Images
    from pynwb.behavior import BehavioralTimeSeries, EyeTracking, SpatialSeries
    from pynwb.epoch import TimeIntervals
    from pynwb.image import GrayscaleImage, ImageSeries, IndexSeries, RGBImage
    from pynwb.ophys import DfOverF, Fluorescence, ImageSegmentation, OpticalChannel, RoiResponseSeries

    nwb = NWBFile(session_description="natural scenes", identifier="session-1",
                  session_start_time=datetime(2024, 1, 1, tzinfo=timezone.utc))
    device = nwb.create_device(name="2p")
    plane = nwb.create_imaging_plane(
        name="plane", optical_channel=OpticalChannel(name="green", description="GCaMP", emission_lambda=510.0),
        description="V1", device=device, excitation_lambda=910.0, indicator="GCaMP6f", location="VISp",
        imaging_rate=RATE,
    )
    segmentation = ImageSegmentation()
    table = segmentation.create_plane_segmentation(description="rois", imaging_plane=plane, name="PlaneSegmentation")
    for roi, roi_id in enumerate(ROI_IDS):
        mask = np.zeros((32, 32), "float32")
        mask[roi : roi + 3, 2 * roi % 29 : 2 * roi % 29 + 2] = 1.0
        table.add_roi(image_mask=mask, id=int(roi_id))
    ophys = nwb.create_processing_module(name="ophys", description="2p")
    ophys.add(segmentation)
    region = table.create_roi_table_region(description="all", region=list(range(n_region)))
    timing = dict(rate=RATE, starting_time=0.0) if rate_based else dict(timestamps=scene["times"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # n_region != N_ROIS warns, as it should
        ophys.add(DfOverF(RoiResponseSeries(name="dff", data=scene["trace"], rois=region, unit="n.a.", **timing)))
        if fluorescence:
            ophys.add(Fluorescence(RoiResponseSeries(name="raw", data=scene["trace"] + 1.0, rois=region,
                                                     unit="a.u.", **timing)))

    behaviour = nwb.create_processing_module(name="behavior", description="running and eye")
    running_times = np.arange(len(scene["running"])) / (2 * RATE)
    behaviour.add(BehavioralTimeSeries(TimeSeries(name="running_speed", data=scene["running"], unit="cm/s",
                                                  timestamps=running_times)))
    behaviour.add(EyeTracking(SpatialSeries(name="pupil_position", data=scene["pupil"], reference_frame="screen",
                                            timestamps=scene["times"])))

    order, onsets, images = scene["order"], scene["onsets"], scene["images"]
    if layout in ("images", "template", "intervals"):
        pictures = [RGBImage(name=f"image_{i}", data=_colour(image)) if rgb else
                    GrayscaleImage(name=f"image_{i}", data=image) for i, image in enumerate(images)]
        # Stored out of name order: the order_of_images, not the names, defines the index.
        stack = Images(name="natural_scenes_images", images=pictures[::-1],
                       order_of_images=ImageReferences(name="order_of_images", data=pictures))
        nwb.add_stimulus_template(stack)
    if layout in ("images", "template"):
        nwb.add_stimulus(IndexSeries(name="natural_scenes", data=order.astype("uint32"), indexed_images=stack,
                                     unit="N/A", timestamps=onsets))
    template = None
    if layout == "template" or linked:
        template = ImageSeries(name="natural_scenes_template", data=images, unit="n.a.", rate=1.0)
        nwb.add_stimulus_template(template)
    if other_images is not None:
        nwb.add_stimulus_template(ImageSeries(name="other_images", data=other_images, unit="n.a.", rate=1.0))
    if layout == "frames":
        nwb.add_stimulus(ImageSeries(name="natural_scenes", data=images[order], unit="n.a.", timestamps=onsets))
    elif layout == "intervals":
        presentations = TimeIntervals(name="natural_scenes_presentations", description="one row a presentation")
        presentations.add_column("frame", "index into natural_scenes_images, -1 for blank")
        for onset, image in zip(onsets, order):
            presentations.add_interval(start_time=onset, stop_time=onset + PERIOD, frame=int(image),
                                       timeseries=[template] if linked else None)
        nwb.add_time_intervals(presentations)
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    if layout == "template":
        # pynwb no longer writes IndexSeries.indexed_timeseries; files from before NWB 2.5 (Allen's) have it.
        with h5py.File(path, "r+") as file:
            del file[f"{STIMULUS}/indexed_images"]
            del file["stimulus/templates/natural_scenes_images"]
            file[f"{STIMULUS}/indexed_timeseries"] = h5py.SoftLink("/stimulus/templates/natural_scenes_template")
    return str(path)


def _window_mean(times, values, onset, window):
    used = (times >= onset + window[0]) & (times < onset + window[1])
    assert used.any()
    return values[used].mean(axis=0)


@pytest.fixture(scope="module")
def scene():
    return _scene()


@pytest.fixture(scope="module")
def allen(scene, tmp_path_factory):
    """An Allen-like file: IndexSeries -> Images, DfOverF with timestamps, running speed, pupil."""
    return _write(tmp_path_factory.mktemp("nwb") / "session.nwb", scene)


@pytest.fixture
def copy(allen, tmp_path):
    """A fresh copy of the Allen-like file, to break with h5py."""
    return shutil.copy(allen, tmp_path / "session.nwb")


def test_reads_each_presentation_as_a_trial(allen, scene):
    data = load_nwb(allen, behavior="running_speed", pupil_center="pupil_position")
    order, onsets = scene["order"], scene["onsets"]
    assert data.name == "session"
    assert data.images.shape == (len(order), *IMAGE_SHAPE, 1) and data.images.dtype == np.float32
    assert data.responses.shape == (len(order), N_ROIS) and data.responses.dtype == np.float32
    np.testing.assert_array_equal(data.image_ids, order)
    np.testing.assert_array_equal(data.images[..., 0], scene["images"][order])  # uint8 units kept: 0..255
    np.testing.assert_array_equal(data.trials["onset_time"], onsets)
    np.testing.assert_array_equal(data.trials["presentation"], np.arange(len(order)))
    np.testing.assert_array_equal(data.neurons["unit_ids"], ROI_IDS)
    # ROI 5's mask covers rows 5..7 and columns 10..11.
    np.testing.assert_allclose(data.neurons["roi_centroid"][5], [10.5, 6.0])
    assert data.behavior.shape == (len(order), 1) and data.pupil_center.shape == (len(order), 2)

    # Default window: onset to the next onset (250 ms > 2 frames at 30 Hz).
    running_times = np.arange(len(scene["running"])) / (2 * RATE)
    for trial in (0, 17, len(order) - 1):
        window = (0.0, PERIOD)
        np.testing.assert_allclose(data.responses[trial],
                                   _window_mean(scene["times"], scene["trace"], onsets[trial], window), rtol=1e-5)
        np.testing.assert_allclose(data.behavior[trial, 0],
                                   _window_mean(running_times, scene["running"], onsets[trial], window), rtol=1e-5)
        np.testing.assert_allclose(data.pupil_center[trial],
                                   _window_mean(scene["times"], scene["pupil"], onsets[trial], window), atol=1e-6)
    assert data.fingerprint() == load_nwb(allen, behavior=["running_speed"],
                                          pupil_center="pupil_position").fingerprint()


def test_provenance_records_what_the_reader_chose(allen):
    data = load_nwb(allen, behavior="running_speed", pupil_center="pupil_position", image_size=(9, 16))
    assert data.provenance == {
        "responses": DFF,
        "stimulus": STIMULUS,
        "images": "stimulus/templates/natural_scenes_images",
        "window": (0.0, pytest.approx(PERIOD, abs=1e-9)),  # the default: onset to the next onset
        "image_size": (9, 16),
        "behavior": ["processing/behavior/BehavioralTimeSeries/running_speed"],
        "pupil_center": "processing/behavior/EyeTracking/pupil_position",
        "tier_rule": "fraction (auto): test 0.15, validation 0.1, seed 0",  # every image is repeated
    }
    chosen = load_nwb(allen, window=(0.1, 0.35), tier_rule="fraction", test_fraction=0.2, seed=3)
    assert chosen.provenance == {"responses": DFF, "stimulus": STIMULUS,
                                 "images": "stimulus/templates/natural_scenes_images", "window": (0.1, 0.35),
                                 "tier_rule": "fraction: test 0.2, validation 0.1, seed 3"}
    assert chosen.fingerprint() != load_nwb(allen, window=(0.1, 0.35)).fingerprint()


def test_rate_based_time_base_and_explicit_window(scene, tmp_path):
    path = _write(tmp_path / "rate.nwb", scene, rate_based=True)
    window = (0.1, 0.35)
    data = load_nwb(path, window=window)
    times = np.arange(len(scene["times"])) / RATE
    for trial in (3, 300):
        expected = _window_mean(times, scene["trace"], scene["onsets"][trial], window)
        np.testing.assert_allclose(data.responses[trial], expected, rtol=1e-5)
    assert data.behavior is None and data.pupil_center is None
    # The default window is never shorter than two frames.
    fast = _scene(order=np.arange(6).repeat(2))
    fast["onsets"] = FIRST_ONSET + 0.01 * np.arange(12)
    short = load_nwb(_write(tmp_path / "fast.nwb", fast), tier_rule="fraction")
    np.testing.assert_allclose(short.responses[4], _window_mean(fast["times"], fast["trace"], fast["onsets"][4],
                                                                (0.0, 2 / RATE)), rtol=1e-5)


@pytest.mark.parametrize("layout", ["template", "frames"])
def test_older_layouts_read_alike(layout, allen, scene, tmp_path):
    reference = load_nwb(allen)
    data = load_nwb(_write(tmp_path / f"{layout}.nwb", scene, layout=layout))
    np.testing.assert_array_equal(data.images, reference.images)
    np.testing.assert_array_equal(data.responses, reference.responses)
    if layout == "frames":
        # Ids number the distinct frames by first appearance: a relabelling of the template index.
        first = {image: i for i, image in enumerate(dict.fromkeys(scene["order"].tolist()))}
        np.testing.assert_array_equal(data.image_ids, [first[image] for image in scene["order"]])
    else:
        np.testing.assert_array_equal(data.image_ids, reference.image_ids)
        np.testing.assert_array_equal(data.tiers, reference.tiers)


def test_time_intervals_table_with_blank_presentations(tmp_path):
    scene = _scene(blanks=7)
    path = _write(tmp_path / "intervals.nwb", scene, layout="intervals")
    data = load_nwb(path, stimulus="natural_scenes_presentations")
    shown = np.flatnonzero(scene["order"] >= 0)
    assert data.n_trials == len(shown) == N_IMAGES * N_REPEATS
    np.testing.assert_array_equal(data.trials["presentation"], shown)
    np.testing.assert_array_equal(data.image_ids, scene["order"][shown])
    np.testing.assert_array_equal(data.images[..., 0], scene["images"][scene["order"][shown]])
    trial = 200
    np.testing.assert_allclose(
        data.responses[trial],
        _window_mean(scene["times"], scene["trace"], scene["onsets"][shown[trial]], (0.0, PERIOD)), rtol=1e-5)
    assert data.provenance["stimulus"] == "intervals/natural_scenes_presentations"
    assert data.provenance["images"] == "stimulus/templates/natural_scenes_images"
    assert data.provenance["index_column"] == "frame"
    with pytest.raises(RecordingError, match="natural_scenes_presentations: has no image index column"):
        load_nwb(path, stimulus="natural_scenes_presentations", index_column="image_number")
    with pytest.raises(RecordingError, match="no stimulus found .* with a column image_number"):
        load_nwb(path, index_column="image_number")


def test_colour_images_become_grey(scene, tmp_path):
    data = load_nwb(_write(tmp_path / "rgb.nwb", scene, rgb=True))
    colour = _colour(scene["images"][scene["order"][:5]]).astype("float64")
    np.testing.assert_allclose(data.images[:5, ..., 0], colour @ [0.299, 0.587, 0.114], rtol=1e-5)


def test_image_size_averages_areas(allen, scene):
    data = load_nwb(allen, image_size=(9, 16))
    expected = scene["images"][scene["order"][:4]].astype("float64").reshape(4, 9, 2, 16, 2).mean(axis=(2, 4))
    assert data.images.shape == (len(scene["order"]), 9, 16, 1)
    np.testing.assert_allclose(data.images[:4, ..., 0], expected, rtol=1e-5)
    odd = load_nwb(allen, image_size=(7, 10))  # non-integer factors: still the mean over the covered area
    np.testing.assert_allclose(odd.images.mean(axis=(1, 2, 3)), data.images.mean(axis=(1, 2, 3)), rtol=1e-4)


def _tiers_of_images(data):
    tiers = {}
    for image, tier in zip(data.image_ids, data.tiers):
        tiers.setdefault(int(image), set()).add(str(tier))
    assert all(len(names) == 1 for names in tiers.values()), "an image's repeats span tiers"
    return {image: names.pop() for image, names in tiers.items()}


def test_tiers_when_every_image_is_repeated(allen):
    data = load_nwb(allen)
    tiers = _tiers_of_images(data)
    counts = {name: sum(tier == name for tier in tiers.values()) for name in ("train", "validation", "test")}
    assert counts == {"test": 18, "validation": 10, "train": 90}  # round(0.15 * 118), round(0.1 * 100)
    assert all(len(group) == N_REPEATS for group in data.repeat_groups("test"))
    np.testing.assert_array_equal(load_nwb(allen).tiers, data.tiers)
    assert not np.array_equal(load_nwb(allen, seed=1).tiers, data.tiers)
    bigger = _tiers_of_images(load_nwb(allen, test_fraction=0.5))
    assert sum(tier == "test" for tier in bigger.values()) == 59


def test_tiers_when_only_some_images_are_repeated(tmp_path):
    order = np.concatenate([np.arange(100), np.repeat(np.arange(100, N_IMAGES), 4)])
    order = np.random.default_rng(3).permutation(order)
    data = load_nwb(_write(tmp_path / "mouse.nwb", _scene(order=order)))
    tiers = _tiers_of_images(data)
    assert {image for image, tier in tiers.items() if tier == "test"} == set(range(100, N_IMAGES))
    assert sum(tier == "validation" for tier in tiers.values()) == 10
    assert sum(tier == "train" for tier in tiers.values()) == 90
    assert data.provenance["tier_rule"] == "repeated (auto): validation 0.1, seed 0"
    # One image shown once among repeated ones is no train set: say so, and offer the fraction rule.
    order = np.concatenate([np.arange(1), np.repeat(np.arange(1, 12), 2)])
    path = _write(tmp_path / "one.nwb", _scene(order=order))
    with pytest.raises(RecordingError, match="natural_scenes: 11 images are repeated.*'fraction' rule"):
        load_nwb(path)
    assert set(load_nwb(path, tier_rule="fraction").tiers) == {"train", "validation", "test"}


def test_file_errors(tmp_path, monkeypatch, allen):
    with pytest.raises(RecordingError, match="missing.nwb: no such file"):
        load_nwb(tmp_path / "missing.nwb")
    (tmp_path / "text.nwb").write_text("not HDF5")
    with pytest.raises(RecordingError, match="text.nwb: not a readable NWB"):
        load_nwb(tmp_path / "text.nwb")
    with h5py.File(tmp_path / "plain.h5", "w") as file:
        file["x"] = np.arange(3)
    with pytest.raises(RecordingError, match="plain.h5: not a readable NWB file"):
        load_nwb(tmp_path / "plain.h5")
    monkeypatch.setitem(__import__("sys").modules, "pynwb", None)
    with pytest.raises(ImportError, match=r'pip install "keras_sysid\[nwb\]"'):
        load_nwb(allen)


def test_argument_errors(allen):
    for bad in (dict(window=(0.2, 0.1)), dict(window=0.2), dict(image_size=(0, 4)), dict(test_fraction=1.0),
                dict(tier_rule="random")):
        with pytest.raises(ValueError):
            load_nwb(allen, **bad)
    with pytest.raises(ValueError, match="images= is for a TimeIntervals"):
        load_nwb(allen, images="natural_scenes_images")


def test_several_or_no_response_series(scene, tmp_path, copy):
    path = _write(tmp_path / "two.nwb", scene, fluorescence=True)
    with pytest.raises(RecordingError, match=r"several RoiResponseSeries.*DfOverF/dff.*Fluorescence/raw"):
        load_nwb(path)
    np.testing.assert_array_equal(load_nwb(path, responses="DfOverF/dff").responses, load_nwb(copy).responses)
    assert load_nwb(path, responses="processing/ophys/Fluorescence/raw").responses.mean() > 0.9
    with pytest.raises(RecordingError, match=r"no RoiResponseSeries named 'spikes'.*DfOverF/dff"):
        load_nwb(path, responses="spikes")
    with h5py.File(copy, "r+") as file:
        del file["processing/ophys/DfOverF"]
    with pytest.raises(RecordingError, match=r"no RoiResponseSeries found.*running_speed"):
        load_nwb(copy)


def test_several_or_no_stimuli(copy):
    with h5py.File(copy, "r+") as file:
        file.copy(file[STIMULUS], f"{STIMULUS}_again")
    with pytest.raises(RecordingError, match=r"several stimulus.*natural_scenes', .*natural_scenes_again"):
        load_nwb(copy)
    assert load_nwb(copy, stimulus="stimulus/presentation/natural_scenes").n_trials == N_IMAGES * N_REPEATS
    with h5py.File(copy, "r+") as file:
        del file[STIMULUS], file[f"{STIMULUS}_again"]
    with pytest.raises(RecordingError, match="no stimulus found.*IndexSeries"):
        load_nwb(copy)


def test_timestamps_that_do_not_increase(copy):
    with h5py.File(copy, "r+") as file:
        file[f"{DFF}/timestamps"][100] = 1.0
    with pytest.raises(RecordingError, match=r"DfOverF/dff: timestamps do not strictly increase: \[99\]"):
        load_nwb(copy)


def test_presentations_outside_the_recording(copy):
    with h5py.File(copy, "r+") as file:
        file[f"{STIMULUS}/timestamps"][-1] = 10_000.0
    with pytest.raises(RecordingError, match=r"dff: the window .* of presentation 589 of .*natural_scenes .*outside"):
        load_nwb(copy)


def test_windows_without_samples(allen):
    with pytest.raises(RecordingError, match=r"dff: no sample in the window .* widen window="):
        load_nwb(allen, window=(0.0, 0.01))


def test_nan_inside_a_window_names_the_roi(copy, scene):
    inside = int(np.searchsorted(scene["times"], scene["onsets"][40] + 0.1))
    with h5py.File(copy, "r+") as file:
        file[f"{DFF}/data"][0, 2] = np.nan  # before the first onset: in no window, harmless
    assert np.isfinite(load_nwb(copy).responses).all()
    with h5py.File(copy, "r+") as file:
        file[f"{DFF}/data"][inside, 3] = np.inf
    message = rf"dff: NaN or inf in ROI 103 \(column 3\) at sample {inside} .*presentation 40"
    with pytest.raises(RecordingError, match=message):
        load_nwb(copy)


@pytest.mark.filterwarnings("ignore:.*does not match the length of rois")
def test_roi_table_that_does_not_match_the_data(scene, tmp_path):
    path = _write(tmp_path / "rois.nwb", scene, n_region=N_ROIS - 1)
    with pytest.raises(RecordingError, match="dff: data has 20 ROI columns but its rois region lists 19"):
        load_nwb(path)


def test_index_past_the_images(copy):
    with h5py.File(copy, "r+") as file:
        file[f"{STIMULUS}/data"][7] = N_IMAGES
    with pytest.raises(RecordingError, match=f"natural_scenes: presentation 7 shows image {N_IMAGES}, but "
                                              f"natural_scenes_images holds only {N_IMAGES} images"):
        load_nwb(copy)


def test_time_intervals_table_that_does_not_fill_the_only_image_set(tmp_path):
    # The table shows images 0..99; the file's only image set holds 118: nothing says it is the table's.
    rng = np.random.default_rng(5)
    scene = _scene(order=np.concatenate([rng.permutation(100), rng.permutation(100)]))
    path = _write(tmp_path / "subset.nwb", scene, layout="intervals")
    with pytest.raises(RecordingError, match=r"intervals/natural_scenes_presentations \(column 'frame'\): the image "
                                             r"indices reach image 99, but stimulus/templates/natural_scenes_images, "
                                             r"the only image set, holds 118 images \(0 to 117\); if it is this "
                                             r"table's image set, name it with images=\.$"):
        load_nwb(path)
    data = load_nwb(path, images="natural_scenes_images")  # named: the user vouches for it
    np.testing.assert_array_equal(data.images[..., 0], scene["images"][scene["order"]])


def test_time_intervals_table_names_its_image_set(scene, tmp_path):
    # The table's timeseries column points at natural_scenes_template (118 images of 18x32); other_images
    # (150 of 9x16) would take every index too, showing the wrong pictures.
    other = np.random.default_rng(1).integers(0, 255, (150, 9, 16), dtype="uint8")
    path = _write(tmp_path / "linked.nwb", scene, layout="intervals", linked=True, other_images=other)
    data = load_nwb(path)  # three image sets; the table's own is taken
    assert data.provenance["images"] == "stimulus/templates/natural_scenes_template"
    np.testing.assert_array_equal(data.images[..., 0], scene["images"][scene["order"]])
    # natural_scenes_images has the linked set's shape (the same pictures): accepted when named.
    assert load_nwb(path, images="natural_scenes_images").fingerprint() == data.fingerprint()
    with pytest.raises(RecordingError, match=r"intervals/natural_scenes_presentations: its timeseries column points "
                                             r"at stimulus/templates/natural_scenes_template, 118 images of 18x32, "
                                             r"but its indices would be read into stimulus/templates/other_images, "
                                             r"150 images of 9x16; name the table's image set with images=\.$"):
        load_nwb(path, images="other_images")


@pytest.mark.parametrize("attribute, value", [("conversion", np.nan), ("conversion", np.inf), ("offset", np.nan)])
def test_conversion_or_offset_that_is_not_finite_is_named(copy, attribute, value):
    with h5py.File(copy, "r+") as file:
        file[f"{DFF}/data"].attrs[attribute] = value
    with pytest.raises(RecordingError, match=rf"session.nwb: {DFF}: its {attribute} attribute is {value}; "
                                             r"data \* conversion \+ offset must be finite\.$"):
        load_nwb(copy)


def test_conversion_that_overflows_names_the_roi(copy):
    with h5py.File(copy, "r+") as file:
        file[f"{DFF}/data"].attrs["conversion"] = 1e300
    with pytest.raises(RecordingError, match=rf"{DFF}: data \* conversion \+ offset \(conversion 1e\+300, offset 0\) "
                                             r"overflows float32 in ROI 1\d\d \(column \d+\) over the window of "
                                             r"presentation \d+\.$"):
        load_nwb(copy)


def test_fits_a_model_to_a_loaded_file(allen):
    import keras_sysid as ks

    data = load_nwb(allen, behavior="running_speed")
    model = ks.build_model(
        n_neurons=data.n_neurons, image_shape=data.image_shape[:2],
        core={"type": "stacked_conv2d", "channels": 4, "kernel_sizes": [5], "paddings": "same"},
        readout={"type": "factorized", "l1": 0.01},
    )
    x, y = data.tier("train")
    model.adapt(x, y)
    # Small batches: enough steps in 3 epochs to learn from 450 trials.
    ks.fit_with_schedule(model, (x, y), data.tier("validation"), max_epochs=3, verbose=0, batch_size=16)
    summary = ks.evaluation.evaluate_model(model, data, "test").summary()
    assert summary["n_images"] == 18 and summary["n_trials"] == 18 * N_REPEATS
    assert all(np.isfinite(summary[key]) for key in ("corr_single", "corr_avg", "oracle"))
    assert summary["corr_avg"] > 0.1  # ~0.8 here (0.25 to 0.86 over other seeds)
