"""The documentation: every code block of README.md and docs/ runs and prints what its page shows; the site builds.

The blocks run with the quick settings their pages name (docs/examples.py), each page in a
process of its own, so that what a page registers (a readout, a format, a flag) or seeds
touches no other test; the shown outputs are the full runs' (``python docs/examples.py
--full --write PAGE``).
"""

import importlib.util
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_spec = importlib.util.spec_from_file_location("docs_examples", os.path.join(ROOT, "docs", "examples.py"))
examples = importlib.util.module_from_spec(_spec)
sys.modules["docs_examples"] = examples  # dataclasses look their module up there
_spec.loader.exec_module(examples)

PAGES = [page for page in examples.pages() if any(block.runs for block in examples.parse(page))]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: os.path.relpath(page, ROOT))
def test_every_example_runs_and_prints_what_its_page_shows(page):
    blocks = examples.parse(page)
    if examples.needs_mouse_v1(blocks) and examples.mouse_v1_path() is None:
        pytest.skip(f"the mouse V1 recording is not here (set KERAS_SYSID_MOUSE_V1 to {examples.MOUSE_V1_FILE})")
    done = subprocess.run([sys.executable, os.path.join(ROOT, "docs", "examples.py"), page], cwd=ROOT,
                          capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert done.returncode == 0, done.stderr[-8000:]
    assert f"{sum(block.runs for block in blocks)} blocks ran as the page shows" in done.stdout, done.stdout[-3000:]


def test_every_block_runs_or_says_why_it_does_not():
    """Each page's Python and bash blocks run, or carry a reason; quick settings occur in their blocks."""
    skipped = []
    for page in examples.pages():
        with open(page, encoding="utf-8") as file:
            indented = re.search(r"^[ \t]+```", file.read(), re.MULTILINE)
        assert indented is None, f"{page}: an indented fence (inside a list) is neither run nor checked"
        for block in examples.parse(page):
            if block.language in examples.RUN_LANGUAGES:
                block.code_to_run(quick=True)  # raises if a replacement does not occur
                if block.skip:
                    skipped.append(f"{block.where}: {block.skip}")
            elif block.language not in ("text", "mermaid", "json", "yaml", "toml"):
                pytest.fail(f"{block.where}: a ```{block.language or '(no language)'} block: say python or bash "
                            "(run) or text (shown only)")
    # The set-up commands, the test suite itself, Docker, a second machine and the hours-long experiments.
    assert len(skipped) <= 20, "\n".join(skipped)


def test_output_comparison_masks_only_what_it_should():
    shown = "FEV 0.970, RF error 0.24 px\n...\ndone"
    assert examples.output_matches(shown, "FEV 0.9701, RF error 0.2400 px\nepoch 1\nepoch 2\ndone", True)
    assert not examples.output_matches(shown, "FEV 0.950, RF error 0.24 px\ndone", True)
    assert examples.output_matches(shown, "FEV 0.950, RF error 0.24 px\ndone", False)
    assert not examples.output_matches(shown, "FEV 0.970, RF error 0.24 px", True)  # "done" is missing
    assert not examples.output_matches("(2, 5335)", "(2, 5335, 1)", False)


def test_site_builds_strict_with_every_page_in_its_nav(tmp_path):
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, env=dict(os.environ, NO_MKDOCS_2_WARNING="1"))
    assert done.returncode == 0, done.stderr[-5000:]
    with open(os.path.join(ROOT, "mkdocs.yml"), encoding="utf-8") as file:
        nav = set(re.findall(r"([\w/-]+\.md)\s*$", file.read(), re.MULTILINE))
    pages = {os.path.relpath(page, os.path.join(ROOT, "docs")) for page in examples.pages()[1:]}
    assert pages == nav, f"pages not in the nav: {pages - nav}; nav entries without a page: {nav - pages}"
    assert (tmp_path / "site" / "figures" / "insilico" / "mouse_v1_meis.png").exists()


def test_readme_is_short_and_links_only_to_what_exists():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as file:
        readme = file.read()
    assert readme.count("\n") <= 200
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme):
        if not target.startswith("http"):
            assert os.path.exists(os.path.join(ROOT, target)), target


def test_every_command_help_links_to_its_docs_page():
    from keras_sysid.cli import main

    with open(os.path.join(ROOT, "mkdocs.yml"), encoding="utf-8") as file:
        config = file.read()
    assert f"site_url: {main.DOCS_URL}" in config
    for command in main.COMMANDS:  # each command's module names its page
        with open(os.path.join(ROOT, "keras_sysid", "cli", f"{command}.py"), encoding="utf-8") as file:
            page = re.search(r'^DOCS_PAGE = "([\w-]+)/"$', file.read(), re.MULTILINE)
        assert page and os.path.exists(os.path.join(ROOT, "docs", page.group(1) + ".md")), command
    assert f"Documentation: {main.DOCS_URL}" in main.listing()
    done = subprocess.run([sys.executable, "-m", "keras_sysid_launcher", "export", "--help"], cwd=ROOT,
                          capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert done.returncode == 0 and f"Documentation: {main.DOCS_URL}serving/" in done.stdout, done.stdout[-2000:]


def test_fingerprints_are_one_token_and_decimals_are_numbers():
    shown = '{"feve": 0.05302165435553735, "data": "88268afd4db026ebe5ac0e36e70fdcf7284ea419aee71ab28e429034f77d8809"}'
    printed = '{"feve": 0.5621810032544816, "data": "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}'
    assert examples.output_matches(shown, printed, compare_numbers=False)
    assert not examples.output_matches(shown, printed, compare_numbers=True)
