"""Export for serving: a SavedModel, ONNX, OpenVINO IR or LiteRT artefact that describes itself.

Every format serves the same function per signature: ``images`` float32
``[batch, H, W, C]`` in the data's units (pixel values as stored, e.g.
0..255), plus, for a model that takes them, ``behavior`` ``[batch,
n_behavior]`` and ``pupil_center`` ``[batch, n_pupil]`` in the data's units
-> ``responses`` float32 ``[batch, N]`` in the data's units. A
:class:`~keras_sysid.multisession.MultiSessionModel` gets one signature (or
file) per session. What is exported is the model's inference form
(:func:`keras_sysid.inference_forms.for_export`): the same predictions, in
operations every runtime has.

The SavedModel's float signature checks each request before any work is
spent on it: rank, image size and channels, batch size and finite values,
each refused with a message naming the input, the shape expected and the
shape given (a malformed request never reaches a kernel that could abort the
process). A second signature per model, ``serving_default_uint8`` (or
``serving_<session>_uint8``), takes images as stored (``uint8`` 0..255) and
converts them. ONNX Runtime, OpenVINO and LiteRT check
shapes and dtypes against the declared inputs themselves.

Each artefact carries :func:`manifest`: the model card, neuron ids, units,
input scale and shapes, the versions it was made with and the training data's
fingerprint (SavedModel: ``assets/keras_sysid.json`` and a ``metadata``
signature returning it; ONNX: ``metadata_props``; OpenVINO: ``rt_info``; and
``keras_sysid.json`` beside every format's files). Loading any of them needs
its runtime only, not keras_sysid.

Runtimes: TensorFlow for SavedModel and LiteRT conversion; the ``serve``
extra (``pip install "keras_sysid[serve]"``) adds tf2onnx, ONNX Runtime,
OpenVINO and LiteRT's interpreter.
"""

from __future__ import annotations

import datetime
import importlib.util
import json
import os
import platform

import keras
import numpy as np

FORMATS = ("saved_model", "onnx", "openvino", "litert")
MANIFEST_FILE = "keras_sysid.json"
# The Python modules each format needs, and the package that provides each (all in the ``serve`` extra).
_NEEDS = {
    "saved_model": {"tensorflow": "tensorflow"},
    "onnx": {"tensorflow": "tensorflow", "tf2onnx": "tf2onnx", "onnx": "onnx"},
    "openvino": {"tensorflow": "tensorflow", "openvino": "openvino"},
    "litert": {"tensorflow": "tensorflow"},
}
# The files a format writes per signature (ONNX, OpenVINO, LiteRT); the SavedModel is one folder.
_SUFFIX = {"onnx": ".onnx", "openvino": ".xml", "litert": ".tflite"}
# ONNX opset: 17 is read by every ONNX Runtime since 1.13 (2022).
ONNX_OPSET = 17
UINT8_SUFFIX = "_uint8"


class ExportError(ValueError):
    """A model cannot be exported in the format asked for, or a runtime it needs is missing."""


def check_format(format: str) -> None:
    """Refuses an unknown format, or one whose converter is not installed, naming the extra that installs it.

    Raises:
        ExportError: naming the format or the missing packages and ``keras_sysid[serve]``.
    """
    if format not in FORMATS:
        raise ExportError(f"unknown export format {format!r}; formats: {', '.join(FORMATS)}.")
    missing = [package for module, package in _NEEDS[format].items() if importlib.util.find_spec(module) is None]
    if missing:
        raise ExportError(
            f"exporting to {format} needs {', '.join(missing)}, which is not installed: "
            'pip install "keras_sysid[serve]" installs every runtime\'s converter.'
        )


def check_writable(path: str) -> str:
    """Refuses a destination folder that cannot be written, before any work is spent on it.

    A folder is written as a new folder beside ``path`` that then takes its
    place (so ``path`` appears complete or not at all); it is made, with any
    missing folders above it, in the nearest existing folder above ``path``,
    which must therefore be a writable folder.

    Args:
        path: The folder to write (a SavedModel's, say).

    Returns:
        ``path``, normalised.

    Raises:
        ValueError: naming the folder above ``path`` that is not a folder (a file), or is not writable.
    """
    out = os.path.normpath(os.fspath(path))
    folder = os.path.dirname(os.path.abspath(out))
    while not os.path.lexists(folder):
        folder = os.path.dirname(folder)
    if not os.path.isdir(folder):
        raise ValueError(f"cannot write {out}: {folder} is not a folder.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write {out}: the folder {folder} is not writable (read-only, or not yours).")
    return out


def signatures(model: keras.Model) -> dict[str, keras.Model]:
    """``{signature name: the model it serves}``, as every format exports them.

    ``{"serving_default": model}``, or, for a
    :class:`~keras_sysid.multisession.MultiSessionModel`, ``{"serving_<name>":
    session model}`` for each session.
    """
    from keras_sysid.multisession import MultiSessionModel

    if isinstance(model, MultiSessionModel):
        return {f"serving_{name}": session for name, session in model.sessions.items()}
    return {"serving_default": model}


def input_shapes(model: keras.Model) -> dict[str, tuple[int, ...]]:
    """``{input name: shape without the batch axis}`` of everything ``model`` takes, as exported.

    ``model.input_shapes()`` where the model has it (a
    :class:`~keras_sysid.models.SystemIdentificationModel` or an
    :class:`~keras_sysid.ensemble.Ensemble`): ``{"images": (H, W, C)}`` for an
    image-only model, plus ``"behavior"`` and/or ``"pupil_center"`` for one that
    takes the animal's state. Any other model: ``{"images": image_shape or input_shape[1:]}``.
    """
    if hasattr(model, "input_shapes"):
        return {name: tuple(shape) for name, shape in model.input_shapes().items()}
    image_shape = tuple(model.image_shape) if hasattr(model, "image_shape") else tuple(model.input_shape[1:])
    return {"images": image_shape}


def file_name(signature: str, format: str) -> str:
    """The file a format writes for one signature: ``model.onnx`` for ``serving_default``, ``model_<session>.onnx`` else."""
    stem = "model" if signature == "serving_default" else "model_" + signature.removeprefix("serving_")
    return stem + _SUFFIX[format]


# -- what an artefact says about itself ----------------------------------------------


_UNITS = {
    "images": "pixel values as stored in the training data (e.g. 0..255), not rescaled",
    "behavior": "the behaviour variables in the data's units, in the data's order",
    "pupil_center": "the pupil centre (x, y) in the data's units",
}


def manifest(model: keras.Model, format: str, card: dict | None = None, neuron_ids=None,
             data_fingerprint: str | None = None) -> dict:
    """What an exported artefact says about itself (JSON-ready).

    Args:
        model: The model exported (a multi-session model: per session).
        format: One of :data:`FORMATS`.
        card: The model card's facts (a zoo entry's ``metadata.json``, a
            run's ``results.json``); its ``output`` (the responses' units),
            ``input_scale``, ``neuron_ids``, ``data``, ``data_fingerprint``,
            ``licence`` and ``citation`` are used where present.
        neuron_ids: Output column -> unit id: a sequence of length ``N`` (or,
            for a multi-session model, ``{session: sequence}``); ``None``
            leaves the card's statement of the order (or column indices).
        data_fingerprint: The training recording's fingerprint, where known.

    Returns:
        ``{"format", "signatures": {name: {"inputs": {name: {"shape", "dtype",
        "units"}}, "outputs": {"responses": {...}}, "neuron_ids": [...]}},
        "input_scale", "units", "data", "data_fingerprint", "card", "versions", "exported_at"}``.

    Raises:
        ExportError: ``neuron_ids`` does not have one id per output column.
    """
    import keras_sysid
    from keras_sysid.zoo import package_version

    card = dict(card or {})
    described = {}
    for signature, served in signatures(model).items():
        n_neurons = int(served.n_neurons)
        ids = neuron_ids
        if isinstance(ids, dict):
            ids = ids.get(signature.removeprefix("serving_"))
        if ids is not None:
            ids = np.asarray(ids).tolist()
            if len(ids) != n_neurons:
                raise ExportError(f"{signature}: {len(ids)} neuron ids for {n_neurons} output columns.")
        inputs = {name: {"shape": [None, *map(int, shape)], "dtype": "float32", "units": _UNITS.get(name, "")}
                  for name, shape in input_shapes(served).items()}
        described[signature] = {
            "inputs": inputs,
            "outputs": {"responses": {"shape": [None, n_neurons], "dtype": "float32",
                                      "units": card.get("output", "responses in the training data's units")}},
            "neuron_ids": ids if ids is not None else card.get(
                "neuron_ids", f"output column i is neuron i of the training data (0..{n_neurons - 1})"),
        }
        if format == "saved_model":
            uint8 = dict(inputs, images=dict(inputs["images"], dtype="uint8", units="pixel values 0..255, as stored"))
            described[signature + UINT8_SUFFIX] = dict(described[signature], inputs=uint8)
    image_model = next(iter(signatures(model).values()))
    members = getattr(image_model, "members", [image_model])
    mean, std = getattr(members[0], "image_mean", None), getattr(members[0], "image_std", None)
    input_scale = card.get("input_scale") or (
        f"images as stored in the training data; the model standardises them with mean {mean:.4g} and std {std:.4g}"
        if mean is not None and std is not None else "images as stored in the training data")
    versions = {"keras_sysid": keras_sysid.__version__, "keras": keras.__version__, "python": platform.python_version()}
    versions.update({package: package_version(package) for package in ("tensorflow", "tf2onnx", "onnx", "openvino")
                     if package_version(package) is not None})
    return {
        "format": format,
        "model": getattr(model, "name", None),
        "signatures": described,
        "input_scale": input_scale,
        "units": card.get("output", "responses in the training data's units"),
        "data": card.get("data"),
        "data_fingerprint": data_fingerprint or card.get("data_fingerprint"),
        "licence": card.get("licence"),
        "citation": card.get("citation"),
        "card": card,
        "versions": versions,
        "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def rest_example(manifest_: dict, signature: str = "serving_default", batch: int = 1) -> dict:
    """An example TensorFlow Serving REST request body for one signature: zeros of the right shapes.

    Returns:
        ``{"signature_name": signature, "instances": [{input: nested list}, ...]}``
        (row format; one instance per image).
    """
    inputs = manifest_["signatures"][signature]["inputs"]
    instance = {name: np.zeros(spec["shape"][1:], dtype=spec["dtype"]).tolist() for name, spec in inputs.items()}
    return {"signature_name": signature, "instances": [instance] * batch}


# -- writing ------------------------------------------------------------------------


def export_model(model: keras.Model, folder: str, format: str = "saved_model", card: dict | None = None,
                 neuron_ids=None, data_fingerprint: str | None = None) -> dict:
    """Writes ``model`` into ``folder`` (an existing, empty folder) in ``format``, with its manifest.

    Files: ``saved_model``: the SavedModel (``saved_model.pb``,
    ``variables/``, ``assets/keras_sysid.json``); ``onnx``, ``openvino``,
    ``litert``: :func:`file_name` per signature (``model.onnx``;
    ``model.xml`` + ``model.bin``; ``model.tflite``). Every format also gets
    ``keras_sysid.json``, the :func:`manifest`.

    Args:
        model: A built :class:`~keras_sysid.models.SystemIdentificationModel`,
            :class:`~keras_sysid.ensemble.Ensemble` or
            :class:`~keras_sysid.multisession.MultiSessionModel`.
        folder: An existing, empty folder (write into a temporary folder and
            rename it into place, as ``keras-sysid export`` does, for an
            all-or-nothing result).
        format: One of :data:`FORMATS`.
        card: What the artefact says about itself: the model card's facts
            (:func:`manifest`).
        neuron_ids: Output column -> unit id (:func:`manifest`).
        data_fingerprint: The training recording's fingerprint (:func:`manifest`).

    Returns:
        The manifest written.

    Raises:
        ExportError: an unknown format, a missing converter (naming the
            extra), or a backend other than TensorFlow.

    Example:
        >>> export_model(ks.zoo.load("mouse_v1_gaussian"), "serving/1")
        >>> served = tf.saved_model.load("serving/1").signatures["serving_default"]
        >>> served(images=tf.zeros((2, 36, 64, 1)))["responses"].shape
        TensorShape([2, 5335])
    """
    from keras_sysid import atomic_files, inference_forms
    from keras_sysid.readouts import PrunedMaskReadout

    check_format(format)
    if keras.backend.backend() != "tensorflow":
        raise ExportError(f"export needs the TensorFlow Keras backend; this one is {keras.backend.backend()!r} "
                          "(keras-sysid export --backend tensorflow).")
    served = {signature: inference_forms.for_export(session) for signature, session in signatures(model).items()}
    if format != "saved_model":
        for session in served.values():
            for member in getattr(session, "members", [session]):
                if isinstance(getattr(member, "readout", None), PrunedMaskReadout):
                    # Its TensorFlow sparse matmul has no ONNX, OpenVINO or LiteRT operator.
                    raise ExportError(f"a pruned-mask readout (an inference copy for TensorFlow) cannot be exported "
                                      f"to {format}; export the factorized model it was made from.")
    described = manifest(model, format, card, neuron_ids, data_fingerprint)
    text = json.dumps(atomic_files.json_safe(described), indent=2)
    if format == "saved_model":
        _write_saved_model(served, folder, text)
    else:
        write = {"onnx": _write_onnx, "openvino": _write_openvino, "litert": _write_litert}[format]
        for signature, session in served.items():
            write(session, os.path.join(folder, file_name(signature, format)), text)
    with open(os.path.join(folder, MANIFEST_FILE), "w") as file:
        file.write(text + "\n")
    return described


def export_saved_model(model: keras.Model, path: str, **described) -> dict:
    """:func:`export_model` in the SavedModel format, into ``path`` (made if missing; it must be empty)."""
    os.makedirs(path, exist_ok=True)
    return export_model(model, path, "saved_model", **described)


def _call(model, names, inputs):
    given = dict(zip(names, inputs))
    return model(given if len(names) > 1 else given["images"], training=False)


def _plain_function(model):
    """A ``tf.function`` ``(*inputs) -> {"responses"}`` with the declared shapes, for the converters."""
    import tensorflow as tf

    shapes = input_shapes(model)
    specs = [tf.TensorSpec((None, *shapes[name]), tf.float32, name=name) for name in shapes]

    @tf.function(input_signature=specs)
    def serve(*inputs):
        return {"responses": tf.identity(_call(model, list(shapes), inputs), name="responses")}

    return serve


def _checked(name: str, value, shape: tuple[int, ...], check_finite: bool):
    """``value`` after checks of rank, size and finiteness that refuse a bad request with a named error.

    The signature declares an unknown shape, so these run on every request
    (a declared shape would let TensorFlow fold them away, and signatures do
    not check shapes themselves).
    """
    import tensorflow as tf

    expected = f"{name}: expected {value.dtype.name} of shape [batch, {', '.join(map(str, shape))}], batch >= 1"
    rank = 1 + len(shape)
    # Every step below is defined for a request of any shape, so no step can fail before the checks do.
    size = tf.shape(value)
    padded = tf.concat([size, tf.zeros([rank], tf.int32)], axis=0)[:rank]
    fits = tf.logical_and(tf.equal(tf.size(size), rank), padded[0] > 0)
    fits = tf.logical_and(fits, tf.reduce_all(tf.equal(padded[1:], tf.constant(shape, tf.int32))))
    checks = [tf.debugging.Assert(fits, [expected + "; got a request of shape", size], summarize=8)]
    if check_finite:
        bad = tf.reduce_sum(tf.cast(tf.logical_not(tf.math.is_finite(value)), tf.int32))
        checks.append(tf.debugging.Assert(tf.equal(bad, 0), [
            f"{name}: values must be finite; the request has", bad, "NaN or infinite entries"]))
    # What the model gets has the right shape whatever came: the request where it fits, zeros otherwise. The
    # checks raise either way; this only makes sure no kernel ever sees a malformed tensor meanwhile (TensorFlow
    # may run the model's first ops before the checks, and a wrongly ranked input aborts oneDNN's convolution).
    safe = tf.cond(fits, lambda: tf.reshape(value, (-1, *shape)), lambda: tf.zeros((1, *shape), value.dtype))
    with tf.control_dependencies(checks):
        return tf.identity(safe)


def _checked_function(model, uint8: bool):
    """``(*inputs) -> {"responses"}`` for a SavedModel signature: every input checked, uint8 images converted."""
    import tensorflow as tf

    shapes = input_shapes(model)
    names = list(shapes)

    def serve(*inputs):
        checked = [_checked(name, value, shapes[name], not (uint8 and name == "images"))
                   for name, value in zip(names, inputs)]
        if uint8:
            checked[0] = tf.cast(checked[0], tf.float32)
        return {"responses": _call(model, names, checked)}

    # A request of the wrong dtype is refused by TensorFlow before the function runs, with a message naming
    # the function ("cannot compute ...<name>... as input #1 was expected to be a float tensor but is a
    # double tensor"): the name lists the inputs and their dtypes, in the signature's (alphabetical) order,
    # so that input #i is the i-th named.
    dtypes = {name: "float32" for name in names}
    if uint8:
        dtypes["images"] = "uint8"
    serve.__name__ = "takes_" + "_and_".join(f"{name}_{dtypes[name]}" for name in sorted(dtypes))
    return serve


def _write_saved_model(served: dict, folder: str, text: str) -> None:
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    for model in served.values():
        archive.track(model)
    for signature, model in served.items():
        names = list(input_shapes(model))
        # Unknown shapes, so that _checked sees every request as it came.
        floats = [tf.TensorSpec(None, tf.float32, name=name) for name in names]
        archive.add_endpoint(name=signature, fn=_checked_function(model, uint8=False), input_signature=floats)
        archive.add_endpoint(name=signature + UINT8_SUFFIX, fn=_checked_function(model, uint8=True),
                             input_signature=[tf.TensorSpec(None, tf.uint8, name="images"), *floats[1:]])

    constant = tf.constant(text)
    archive.add_endpoint(name="metadata", fn=lambda: {"keras_sysid_json": constant}, input_signature=[])
    archive.write_out(folder, verbose=False)
    os.makedirs(os.path.join(folder, "assets"), exist_ok=True)
    with open(os.path.join(folder, "assets", MANIFEST_FILE), "w") as file:
        file.write(text + "\n")


def _write_onnx(model, path: str, text: str) -> None:
    import onnx
    import tf2onnx

    function = _plain_function(model)
    proto, _ = tf2onnx.convert.from_function(function, input_signature=function.input_signature, opset=ONNX_OPSET)
    _rename_output(proto.graph, "responses")
    proto.metadata_props.add(key="keras_sysid", value=text)
    onnx.save(proto, path)


def _rename_output(graph, name: str) -> None:
    """Names the graph's (single) output ``name`` (tf2onnx names it after a TensorFlow tensor)."""
    old = graph.output[0].name
    for node in graph.node:
        node.output[:] = [name if output == old else output for output in node.output]
        node.input[:] = [name if value == old else value for value in node.input]
    graph.output[0].name = name


def _write_openvino(model, path: str, text: str) -> None:
    import openvino as ov

    function = _plain_function(model)
    converted = ov.convert_model(function.get_concrete_function(), input=[
        (spec.name, ov.PartialShape([-1, *spec.shape[1:]]), ov.Type.f32) for spec in function.input_signature])
    converted.outputs[0].get_tensor().set_names({"responses"})
    converted.set_rt_info(text, ["keras_sysid"])
    # Weights as float32: OpenVINO would store them as float16 by default.
    ov.save_model(converted, path, compress_to_fp16=False)


def _write_litert(model, path: str, text: str) -> None:
    import tempfile

    import tensorflow as tf

    # Through a plain SavedModel, TensorFlow's own route from Keras 3 to LiteRT: converting the function
    # directly leaves variable reads in that the interpreter cannot run.
    function = _plain_function(model)
    with tempfile.TemporaryDirectory(dir=os.path.dirname(path)) as plain:
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint("serving_default", function)
        archive.write_out(plain, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(plain)
        # Built-in operators only, so that LiteRT's plain interpreter (phones, microcontrollers) runs it.
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        flatbuffer = converter.convert()
    with open(path, "wb") as file:
        file.write(flatbuffer)


# -- running an artefact --------------------------------------------------------------


def runtime_predictor(folder: str, signature: str = "serving_default", threads: int | None = None):
    """``predict(inputs) -> responses`` running an exported artefact in its own runtime (not Keras).

    Args:
        folder: A folder :func:`export_model` wrote (its ``keras_sysid.json``
            names the format).
        signature: Which signature (or session's file) to run.
        threads: CPU threads for the runtime (``None``: its default).

    Returns:
        A function taking ``{input name: array}`` (or the images array) and
        returning ``(batch, N)`` float32 responses, through TensorFlow
        (SavedModel), ONNX Runtime, OpenVINO (float32 inference precision) or
        LiteRT's interpreter.

    Raises:
        ExportError: no manifest in ``folder``, an unknown signature, or the runtime is missing.
    """
    path = os.path.join(folder, MANIFEST_FILE)
    if not os.path.isfile(path):
        raise ExportError(f"{folder}: no {MANIFEST_FILE}; not a folder keras-sysid export wrote.")
    with open(path) as file:
        described = json.load(file)
    format = described["format"]
    if signature not in described["signatures"]:
        raise ExportError(f"{folder}: no signature {signature!r}; it has {', '.join(described['signatures'])}.")
    names = list(described["signatures"][signature]["inputs"])

    def feed(inputs):
        inputs = inputs if isinstance(inputs, dict) else {"images": inputs}
        return {name: np.asarray(inputs[name], dtype=described["signatures"][signature]["inputs"][name]["dtype"])
                for name in names}

    runtime = {"saved_model": "tensorflow", "onnx": "onnxruntime", "openvino": "openvino",
               "litert": "ai_edge_litert"}[format]
    if importlib.util.find_spec(runtime) is None:
        raise ExportError(f"running a {format} export needs {runtime}: pip install \"keras_sysid[serve]\".")
    if format == "saved_model":
        import tensorflow as tf

        served = tf.saved_model.load(folder).signatures[signature]
        return lambda inputs: served(**{k: tf.constant(v) for k, v in feed(inputs).items()})["responses"].numpy()
    file = os.path.join(folder, file_name(signature, format))
    if format == "onnx":
        import onnxruntime

        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        session = onnxruntime.InferenceSession(file, options, providers=["CPUExecutionProvider"])
        return lambda inputs: session.run(["responses"], feed(inputs))[0]
    if format == "openvino":
        import openvino

        config = {"INFERENCE_PRECISION_HINT": "f32"}  # OpenVINO would compute in bfloat16 where the CPU has it
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        compiled = openvino.Core().compile_model(file, "CPU", config)
        request = compiled.create_infer_request()
        return lambda inputs: np.array(request.infer(feed(inputs))[compiled.outputs[0]])
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=file, num_threads=threads)
    runner = interpreter.get_signature_runner()
    return lambda inputs: runner(**feed(inputs))["responses"]
