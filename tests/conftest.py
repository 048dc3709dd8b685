import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(1234)


_BACKGROUND_TEST = "test_layer_and_model_tests_pass_under"


@pytest.hookimpl(trylast=True)  # after -k / -m deselection: start only what will run
def pytest_collection_modifyitems(config, items):
    """Starts the other backends' layer-test subprocesses when collection ends and checks them last.

    They take minutes, mostly compiling on one core; started first, they run beside the rest of the suite
    on the second core instead of after it.
    """
    late = [item for item in items if getattr(item, "originalname", None) == _BACKGROUND_TEST]
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # Under pytest-xdist every worker collects every test, and the other worker keeps the second core
        # busy anyway: the test starts its own run when a worker reaches it.
        return
    for item in late:
        skipped = any(mark.args and mark.args[0] for mark in item.iter_markers("skipif"))
        if not skipped:
            item.module.start_layer_tests(item.callspec.params["backend"])
    items[:] = [item for item in items if item not in late] + late


def pytest_sessionfinish(session, exitstatus):
    for item in getattr(session, "items", []):
        if getattr(item, "originalname", None) == _BACKGROUND_TEST:
            item.module.stop_layer_tests()
            break
