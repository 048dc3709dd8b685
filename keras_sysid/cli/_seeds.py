"""``keras-sysid evaluate --seeds``: how consistent several fits' readout positions and features are.

The evaluate command adopts this module's flags (``flags.adopt_module_key_flags(_seeds)``),
so that its ``--help`` lists them, and hands over to :func:`main` when ``--seeds`` is given.
"""

import json
import os
import sys
import time

from absl import flags

from keras_sysid import consistency, zoo
from keras_sysid.ensemble import Ensemble

_SEEDS = flags.DEFINE_list(
    "seeds", None,
    "Compare fits of the same neurons instead of scoring one: comma-separated run folders (holding model.keras), "
    ".keras files, zoo names or zoo-format folders, or one ensemble (its members); see above.",
)
_N_CLUSTERS = flags.DEFINE_list(
    "n_clusters", [str(k) for k in consistency.DEFAULT_N_CLUSTERS],
    "With --seeds: the numbers of k-means clusters at which the fits' feature clusterings are compared.",
)


def given() -> bool:
    """Whether ``--seeds`` was given (then :func:`main` runs instead of scoring ``--model``)."""
    return bool(_SEEDS.value)


def load_fits(specs) -> tuple[list[str], list]:
    """The named models of ``--seeds``: each spec loaded, or a lone ensemble's members.

    Args:
        specs: Run folders (with ``model.keras``), ``.keras`` files, zoo names or zoo-format folders.

    Returns:
        ``(names, models)``: one per spec, or ``spec[i]`` per member of a lone ensemble.

    Raises:
        ValueError: an ensemble among several specs; an unreadable or unknown model.
        FileNotFoundError: a ``.keras`` file that does not exist.
    """
    loaded = []
    for spec in specs:
        run_model = os.path.join(spec, "model.keras")
        print(f"loading {spec} ...", flush=True)
        loaded.append((spec, zoo.load_any(run_model if os.path.isfile(run_model) else spec)))
    if len(loaded) == 1 and isinstance(loaded[0][1], Ensemble):
        spec, ensemble = loaded[0]
        return [f"{spec}[{i}]" for i in range(len(ensemble.members))], list(ensemble.members)
    ensembles = [spec for spec, model in loaded if isinstance(model, Ensemble)]
    if ensembles:
        raise ValueError(f"--seeds: {', '.join(ensembles)} is an ensemble: give it alone (its members are compared) "
                         "or give its members' fits one by one.")
    return [spec for spec, _ in loaded], [model for _, model in loaded]


def main(other_flags: dict) -> None:
    """Prints progress, then the consistency report of ``--seeds`` as one JSON line; exits on bad input.

    Args:
        other_flags: ``{flag: value}`` of evaluate's flags given with ``--seeds``, none of which it takes.
    """
    given_too = [f"--{name}" for name, value in other_flags.items() if value]
    try:
        if given_too:
            raise ValueError(f"--seeds compares fits with each other; it takes no {', '.join(given_too)}.")
        try:
            n_clusters = [int(k) for k in _N_CLUSTERS.value]
        except ValueError:
            raise ValueError(f"--n_clusters must be whole numbers; got {','.join(_N_CLUSTERS.value)}.") from None
        started = time.perf_counter()
        names, models = load_fits(_SEEDS.value)
        print(f"comparing {len(models)} fits ({len(models) * (len(models) - 1) // 2} pairs): positions, and "
              f"k-means clusters of the features at k = {', '.join(map(str, n_clusters))} ...", flush=True)
        report = consistency.seed_consistency(models, names=names, n_clusters=n_clusters)
    except (ValueError, FileNotFoundError) as error:
        sys.exit(f"error: {error}")
    print(f"  done ({time.perf_counter() - started:.1f} s)", flush=True)
    print(json.dumps(report))
