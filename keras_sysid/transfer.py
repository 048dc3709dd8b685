"""Transfer learning: a pretrained core (*what*) with a new readout (*where*) for new neurons."""

from __future__ import annotations

import keras
import numpy as np

from keras_sysid import validation
from keras_sysid.models import READOUTS, SystemIdentificationModel, _from_spec


def with_new_readout(
    pretrained: SystemIdentificationModel,
    n_neurons: int,
    readout=None,
    freeze_core: bool = True,
    mean_responses=None,
    name: str = "transferred",
) -> SystemIdentificationModel:
    """A model for a new population that reuses ``pretrained``'s core.

    The core is copied (config and weights), so ``pretrained`` is left
    untouched. With ``freeze_core`` its weights are not trained and its batch
    normalisation runs in inference mode; otherwise the whole model is
    fine-tuned. Image standardisation is kept from ``pretrained``.

    Args:
        pretrained: A fitted model.
        n_neurons: Neurons of the new population.
        readout: A readout layer or ``{"type": ..., **kwargs}``; default: the
            same kind and settings as ``pretrained``'s readout.
        freeze_core: Train only the readout.
        mean_responses: ``(n_neurons,)`` mean responses of the new population,
            to start the readout bias at.
        name: Model name.

    Returns:
        An uncompiled model; ``compile`` and ``fit`` it as usual.

    Example:
        >>> model = with_new_readout(ks.zoo.load("mouse_v1_gaussian"), n_neurons=800)
        >>> ks.training.fit_with_schedule(model, train, validation)
    """
    core = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(pretrained.core), safe_mode=True)
    if not core.built:
        core.build((None, *pretrained.image_shape))
    core.set_weights(pretrained.core.get_weights())
    core.trainable = not freeze_core
    if readout is None:
        config = pretrained.readout.get_config()
        kind = {cls: key for key, cls in READOUTS.items()}.get(type(pretrained.readout))
        if kind is None:
            raise ValueError(f"Cannot copy a {type(pretrained.readout).__name__} readout; pass `readout`.")
        for key in ("name", "n_neurons", "trainable", "dtype"):
            config.pop(key, None)
        readout = {"type": kind, **config}
    readout_layer = _from_spec("readout", READOUTS, readout, {"n_neurons": n_neurons, "name": "readout"})
    model = SystemIdentificationModel(
        core, readout_layer, pretrained.image_shape, nonlinearity=pretrained.nonlinearity,
        image_mean=pretrained.image_mean, image_std=pretrained.image_std, name=name,
    )
    if mean_responses is not None:
        model.set_mean_responses(np.asarray(mean_responses))
    return model


def locate_new_neurons(model: SystemIdentificationModel, images, responses, ridge: float = 1.0) -> np.ndarray:
    """Where new neurons sit on ``model``'s core grid, found with its core.

    Runs the (pretrained) core on the images and, at every grid position,
    scores a ridge regression of each neuron's responses on the core's
    features there (:func:`~keras_sysid.positions.feature_regression_positions`).
    The core already knows *what* the cell types compute, so only *where*
    is left to find, from ``C`` weights per position instead of a pixel map.

    Args:
        model: A model whose core is pretrained.
        images: ``(T, *image_shape)`` training images in the data's units.
        responses: ``(T, N)`` the new neurons' responses to them.
        ridge: Ridge penalty per image (see ``feature_regression_positions``).

    Returns:
        ``(N, 2)`` (row, column) on the core's grid, for
        ``FixedMaskReadout.set_positions`` or ``FactorizedReadout.initialize_mask_at``.

    Example:
        >>> new = with_new_readout(ks.zoo.load("synthetic_cnn_factorized"), 100, readout={"type": "fixed_mask"})
        >>> new.readout.set_positions(locate_new_neurons(new, images, responses))
    """
    from keras_sysid.positions import feature_regression_positions

    validation.check_responses(responses, n_trials=len(images), name="new neurons' responses")
    on_grid, _ = feature_regression_positions(model.feature_maps(images), responses, ridge=ridge)
    return on_grid


def fresh_copy(model: SystemIdentificationModel, name: str = "fresh") -> SystemIdentificationModel:
    """A model of the same architecture as ``model`` with newly initialised weights."""
    config = keras.saving.serialize_keras_object(model)
    config["config"]["name"] = name
    return keras.saving.deserialize_keras_object(config, safe_mode=True)


def transfer_learning_curve(
    pretrained: SystemIdentificationModel,
    source_population,
    n_neurons: int = 100,
    train_sizes=(128, 256, 512, 1024, 2048),
    freeze_core: bool = True,
    max_epochs: int = 100,
    learning_rate: float = 0.003,
    seed: int = 1,
    log=print,
    min_images_per_epoch: int = 512,
    readout=None,
    locations: str = "core",
) -> list[dict]:
    """FEV on new neurons against training images, transferred core vs. fresh model.

    For each size, :func:`~keras_sysid.data.synthetic.new_neurons` draws a new
    population of the same cell types as ``source_population`` (which
    ``pretrained`` was fitted to). Two models are fitted with the paper's
    schedule: ``pretrained``'s core with a new readout (:func:`with_new_readout`)
    and a fresh model of the same architecture; both are scored by FEV on
    noise-free test rates.

    Args:
        pretrained: The fitted model whose core is transferred.
        source_population: The synthetic population ``pretrained`` was fitted to.
        n_neurons: Neurons of each new population.
        train_sizes: Training images per point of the curve.
        freeze_core: Train only the transferred model's readout.
        max_epochs: Upper bound on epochs per fit.
        learning_rate: Initial Adam learning rate of both fits.
        seed: Seed of the new neurons and of training.
        log: Called with one line per point.
        min_images_per_epoch: Each epoch passes over the training images
            often enough to see at least this many.
        readout: The new readout of both models, e.g. ``{"type": "fixed_mask"}``
            (default: a copy of ``pretrained``'s kind and settings).
        locations: How each new neuron's mask is placed (``fixed_mask``) or
            started (``factorized``): ``"core"``: the transferred model finds
            it with its pretrained core (:func:`locate_new_neurons`), the fresh
            model, which has no trained core, from its spike-triggered
            envelope; ``"envelope"``: both from the envelope; ``"known"``: both
            at the true location, which isolates what the core transfers.

    Returns:
        One row per size: ``n_train``, ``fev_transferred``, ``fev_fresh``,
        ``epochs_transferred``, ``epochs_fresh``.
    """
    from keras_sysid import metrics
    from keras_sysid.data.synthetic import new_neurons
    from keras_sysid.positions import envelope_positions
    from keras_sysid.readouts import FactorizedReadout, FixedMaskReadout
    from keras_sysid.training import fit_with_schedule

    if locations not in ("core", "envelope", "known"):
        raise ValueError(f"locations must be 'core', 'envelope' or 'known'; got {locations!r}.")
    rows = []
    for n_train in train_sizes:
        population = new_neurons(source_population, n_neurons, n_train=n_train, seed=seed)
        mean_responses = population.train.responses.mean(axis=0)
        row = {"n_train": int(n_train)}
        # Each point starts from a clean Keras state (layer names, seed draws), not
        # from what the points before it left behind.
        keras.backend.clear_session()
        keras.utils.set_random_seed(seed)
        # Same architecture, new weights; with_new_readout below gives it the new neurons.
        fresh = fresh_copy(pretrained)
        candidates = {
            "transferred": with_new_readout(
                pretrained, n_neurons, readout=readout, freeze_core=freeze_core, mean_responses=mean_responses
            ),
            "fresh": with_new_readout(
                fresh, n_neurons, readout=readout, freeze_core=False, mean_responses=mean_responses, name="fresh"
            ),
        }
        for label, model in candidates.items():
            if isinstance(model.readout, (FactorizedReadout, FixedMaskReadout)):
                # Masks start at a location, not at random (as the mouse V1
                # rivals do): from random masks, a few hundred images fit noise
                # before they find one.
                if locations == "known":
                    on_grid = model.pixels_to_grid(population.locations.astype("float64"))
                elif locations == "core" and label == "transferred":
                    on_grid = locate_new_neurons(model, population.train.images, population.train.responses)
                else:
                    on_grid = model.pixels_to_grid(
                        envelope_positions(population.train.images, population.train.responses)
                    )
                if isinstance(model.readout, FixedMaskReadout):
                    model.readout.set_positions(on_grid)
                else:
                    model.readout.initialize_mask_at(on_grid)
            history = fit_with_schedule(
                model,
                # Every point's epochs hold about min_images_per_epoch images, so
                # early stopping allows small training sets as many updates.
                population.epoch_stream(
                    "train", 64, seed=seed, passes_per_epoch=max(1, -(-min_images_per_epoch // int(n_train)))
                ),
                population.dataset("validation", 256),
                max_epochs=max_epochs,
                learning_rate=learning_rate,
                verbose=0,
            )
            prediction = model.predict(population.test.images, batch_size=256, verbose=0)
            row[f"fev_{label}"] = float(np.mean(metrics.fev(population.test.clean_responses, prediction)))
            row[f"epochs_{label}"] = len(history.epoch)
        log(f"{n_train} images: FEV transferred {row['fev_transferred']:.3f}, fresh {row['fev_fresh']:.3f}")
        rows.append(row)
    return rows


def learning_curve_for_entry(name_or_path: str, **kwargs) -> list[dict]:
    """:func:`transfer_learning_curve` for a zoo entry fitted to a synthetic population.

    The entry's ``metadata.json`` must hold the ``config`` of the run that
    fitted it (a :class:`~keras_sysid.experiments.SyntheticRunConfig`, as
    ``tools/build_zoo.py --entry synthetic_cnn_factorized`` writes); the source
    population is simulated again from it.

    Args:
        name_or_path: Zoo name or folder.
        **kwargs: Passed to :func:`transfer_learning_curve`.
    """
    from keras_sysid import experiments, zoo
    from keras_sysid.data.synthetic import make_population

    facts = zoo.metadata(name_or_path)
    if "config" not in facts:
        raise ValueError(f"{name_or_path}: metadata.json has no 'config' of a synthetic run to transfer from.")
    config = experiments.SyntheticRunConfig(**facts["config"])
    source = make_population(
        config.ground_truth, n_neurons=config.n_neurons, n_types=config.n_types, image_size=config.image_size,
        n_train=config.n_train, jitter=config.jitter, seed=config.seed,
    )
    return transfer_learning_curve(zoo.load(name_or_path), source, **kwargs)
