"""Installation: every subpackage is listed (the wheel itself is tested in tests/cli/test_cli.py)."""

import os


def test_every_subpackage_is_listed_for_installation():
    # A package missing from setup.cfg imports from the source tree but not once installed.
    import configparser

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    config = configparser.ConfigParser()
    config.read(os.path.join(root, "setup.cfg"))
    listed = set(config["options"]["packages"].split())
    found = {
        os.path.relpath(folder, root).replace(os.sep, ".")
        for folder, _, files in os.walk(os.path.join(root, "keras_sysid"))
        if "__init__.py" in files
    }
    assert found <= listed, f"add to setup.cfg [options] packages: {sorted(found - listed)}"
