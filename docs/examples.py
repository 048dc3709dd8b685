"""Runs the code examples of README.md and docs/**/*.md and checks (or rewrites) the outputs they show.

Every fenced ``python`` or ``bash`` block of a page runs, in the page's order, in one fresh
working folder per page: the Python blocks share one namespace (a page reads like one
session), each bash block runs in ``bash -euo pipefail`` with this interpreter's ``bin``
first on ``PATH``. HTML comments on the lines just above a fence steer it:

- ``<!-- test: skip REASON -->``: the block is not run; the reason is required and is
  shown to whoever reads the page source (e.g. the set-up command, a Docker server).
- ``<!-- test: quick "OLD" "NEW" -->``: the tests replace the text OLD (which must occur in
  the block) with NEW, to run a long fit in seconds; the page says so in its prose. Several
  may stack.
- ``<!-- test: replace "OLD" "NEW" -->``: replaced in every run, full ones too: for a set-up
  step the test environment has already taken (the README's install before its main job).
- ``<!-- test: output -->`` above a ``text`` block: what the block before it prints on
  stdout. A line ``...`` stands for any number of lines. Numbers must agree to a relative
  1e-3 when the block ran as shown, and are not compared after a quick replacement (the
  shown output is the full run's, written by ``--write``).

Usage (from the repository root; the tests run the quick form of every page)::

    python docs/examples.py                 # every page, quick, compared
    python docs/examples.py --full --write docs/your-data.md   # as shown; rewrites its outputs

The mouse V1 examples read ``static20457-5-9-preproc0.zip`` from the working folder: it is
linked there from ``$KERAS_SYSID_MOUSE_V1`` or ``../shared/data/mouse_v1_lurz2021/``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import math
import os
import re
import shlex
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_LANGUAGES = ("python", "bash")
MOUSE_V1_FILE = "static20457-5-9-preproc0.zip"
_FENCE = re.compile(r"^```([\w-]*)\s*$")
_MARKER = re.compile(r"^<!--\s*test:\s*(\w+)\s*(.*?)\s*-->\s*$")
# Fingerprints and keys (hex digests): one token, not a run of numbers; a float's digits are not one.
_HEX = re.compile(r"(?<![\w.])(?=[0-9a-f]*[a-f])[0-9a-f]{16,}\b")
_NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


class ExampleError(AssertionError):
    """An example failed, or printed something other than its page shows; the message names page and line."""


@dataclasses.dataclass
class Block:
    """One fenced block of a page: its code, its markers and, for a run block, the output the page shows."""

    page: str
    line: int  # 1-based line of the opening fence
    language: str
    code: str
    skip: str | None = None
    quick: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    replace: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    shows_output: bool = False
    output: Block | None = None  # the ``text`` block shown as this block's output
    n_lines: int = 0  # lines between the fences

    @property
    def where(self) -> str:
        return f"{os.path.relpath(self.page, ROOT)}:{self.line}"

    @property
    def runs(self) -> bool:
        return self.language in RUN_LANGUAGES and self.skip is None

    def code_to_run(self, quick: bool) -> str:
        """The code with its replacements and, if ``quick``, its quick replacements applied (each must occur)."""
        code = self.code
        for old, new in self.replace + (self.quick if quick else []):
            if old not in code:
                raise ExampleError(f"{self.where}: the replacement {old!r} does not occur in the block.")
            code = code.replace(old, new)
        return code


def pages() -> list[str]:
    """README.md, then every page of docs/ in name order: the pages whose examples run."""
    found = [os.path.join(ROOT, "README.md")]
    for folder, _, files in sorted(os.walk(os.path.join(ROOT, "docs"))):
        found += [os.path.join(folder, name) for name in sorted(files) if name.endswith(".md")]
    return found


def parse(page: str) -> list[Block]:
    """The page's fenced blocks with their markers; an unknown marker or a marker without a fence is an error."""
    with open(page, encoding="utf-8") as file:
        lines = file.read().split("\n")
    blocks, markers, index = [], [], 0
    while index < len(lines):
        line = lines[index]
        marker = _MARKER.match(line)
        fence = _FENCE.match(line)
        if marker:
            markers.append((index + 1, marker.group(1), marker.group(2)))
        elif fence:
            end = index + 1
            while end < len(lines) and lines[end].strip() != "```":
                end += 1
            if end == len(lines):
                raise ExampleError(f"{os.path.relpath(page, ROOT)}:{index + 1}: the fence is never closed.")
            block = Block(page, index + 1, fence.group(1), "\n".join(lines[index + 1:end]) + "\n",
                          n_lines=end - index - 1)
            for where, kind, argument in markers:
                _apply(block, kind, argument, f"{os.path.relpath(page, ROOT)}:{where}")
            if block.shows_output:
                previous = next((b for b in reversed(blocks) if b.language in RUN_LANGUAGES), None)
                if previous is None or previous.output is not None:
                    raise ExampleError(f"{block.where}: an output block must follow the block that prints it.")
                previous.output = block
            blocks.append(block)
            markers, index = [], end
        elif markers and line.strip():
            raise ExampleError(f"{os.path.relpath(page, ROOT)}:{markers[0][0]}: a test marker must sit just above "
                               "a fenced block.")
        index += 1
    return blocks


def _apply(block: Block, kind: str, argument: str, where: str) -> None:
    if kind == "skip":
        if not argument:
            raise ExampleError(f"{where}: say why the block is not run (<!-- test: skip REASON -->).")
        block.skip = argument
    elif kind in ("quick", "replace"):
        words = shlex.split(argument)
        if len(words) != 2:
            raise ExampleError(f'{where}: a replacement is <!-- test: {kind} "OLD" "NEW" -->.')
        getattr(block, kind).append((words[0], words[1]))
    elif kind == "output":
        block.shows_output = True
    else:
        raise ExampleError(f"{where}: unknown test marker {kind!r} (skip, quick, replace, output).")


def mouse_v1_path() -> str | None:
    """The mouse V1 recording (``$KERAS_SYSID_MOUSE_V1``, else ``../shared/data/...``), or ``None`` if absent."""
    candidates = [os.environ.get("KERAS_SYSID_MOUSE_V1", ""),
                  os.path.join(ROOT, "..", "shared", "data", "mouse_v1_lurz2021", MOUSE_V1_FILE)]
    return next((os.path.abspath(path) for path in candidates if path and os.path.exists(path)), None)


def needs_mouse_v1(blocks: list[Block]) -> bool:
    """Whether a page's run blocks read the mouse V1 recording."""
    return any(block.runs and MOUSE_V1_FILE in block.code for block in blocks)


def _run_python(code: str, namespace: dict, where: str) -> str:
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(_Tee(printed, sys.stdout)):
            exec(compile(code, where, "exec"), namespace)  # noqa: S102  (the page's own example)
    except Exception as error:
        raise ExampleError(f"{where}: the example raised {type(error).__name__}: {error}") from error
    return printed.getvalue()


def _run_bash(code: str, workdir: str, where: str) -> str:
    # The interpreter's bin first, so `keras-sysid` and `python` are this environment's.
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3"),
                       PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
                       PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", code], cwd=workdir, env=environment,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sys.stderr.write(done.stderr)
    if done.returncode != 0:
        raise ExampleError(f"{where}: exited with status {done.returncode}:\n{done.stdout[-3000:]}"
                           f"{done.stderr[-3000:]}")
    return done.stdout


class _Tee(io.TextIOBase):
    def __init__(self, *streams):
        self.streams = streams

    def write(self, text):
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self):
        for stream in self.streams:
            stream.flush()


def run_page(page: str, workdir: str, quick: bool = True) -> list[tuple[Block, str]]:
    """Runs the page's blocks in ``workdir``; returns each run block with what it printed on stdout."""
    blocks = parse(page)
    recording = mouse_v1_path()
    if recording is not None:  # under its published name, as the pages read it
        os.symlink(recording, os.path.join(workdir, MOUSE_V1_FILE))
    namespace = {"__name__": "__docs_example__"}
    ran = []
    previous = os.getcwd()
    os.chdir(workdir)
    try:
        for block in blocks:
            if not block.runs:
                continue
            code = block.code_to_run(quick)
            if block.language == "python":
                printed = _run_python(code, namespace, block.where)
            else:
                printed = _run_bash(code, workdir, block.where)
            ran.append((block, printed))
    finally:
        os.chdir(previous)
    return ran


def _numbers_agree(shown: str, printed: str) -> bool:
    try:
        a, b = float(shown), float(printed)
    except ValueError:
        return shown == printed
    return math.isclose(a, b, rel_tol=1e-3, abs_tol=1e-9)


def _line_matches(shown: str, printed: str, compare_numbers: bool) -> bool:
    if compare_numbers and _HEX.findall(shown) != _HEX.findall(printed):
        return False
    shown, printed = _HEX.sub("<hex>", shown), _HEX.sub("<hex>", printed)
    shown_numbers, printed_numbers = _NUMBER.findall(shown), _NUMBER.findall(printed)
    if _NUMBER.sub("#", shown).rstrip() != _NUMBER.sub("#", printed).rstrip():
        return False
    if len(shown_numbers) != len(printed_numbers):
        return False
    return not compare_numbers or all(map(_numbers_agree, shown_numbers, printed_numbers))


def output_matches(shown: str, printed: str, compare_numbers: bool) -> bool:
    """Whether the printed text is the shown text, ``...`` lines standing for any number of lines."""
    expected = shown.rstrip("\n").split("\n")
    actual = printed.rstrip("\n").split("\n") if printed.strip() else []

    def match(i: int, j: int) -> bool:
        if i == len(expected):
            return j == len(actual)
        if expected[i].strip() == "...":
            return any(match(i + 1, k) for k in range(j, len(actual) + 1))
        return j < len(actual) and _line_matches(expected[i], actual[j], compare_numbers) and match(i + 1, j + 1)

    return match(0, 0)


def check(ran: list[tuple[Block, str]], quick: bool) -> None:
    """Raises ExampleError for the first block whose printed output is not the output its page shows."""
    for block, printed in ran:
        if block.output is None:
            continue
        compare_numbers = not (quick and block.quick)
        if not output_matches(block.output.code, printed, compare_numbers):
            raise ExampleError(f"{block.where}: printed\n{printed}\nbut the page shows "
                               f"({'numbers compared' if compare_numbers else 'numbers not compared'})\n"
                               f"{block.output.code}")


def write_outputs(page: str, ran: list[tuple[Block, str]]) -> int:
    """Replaces each shown output of ``page`` with what its block printed; returns how many changed."""
    with open(page, encoding="utf-8") as file:
        lines = file.read().split("\n")
    changed = 0
    for block, printed in sorted(ran, key=lambda item: -item[0].line):
        if block.output is None or block.output.code == printed:
            continue
        start = block.output.line  # the fence's line (1-based) = index of the first content line
        lines[start:start + block.output.n_lines] = printed.rstrip("\n").split("\n") if printed.strip() else []
        changed += 1
    temporary = page + ".tmp"
    with open(temporary, "w", encoding="utf-8") as file:
        file.write("\n".join(lines))
    os.replace(temporary, page)
    return changed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pages", nargs="*", help="pages to run (default: all)")
    parser.add_argument("--full", action="store_true", help="run as shown, without the quick replacements")
    parser.add_argument("--write", action="store_true", help="with --full: write what each block prints "
                                                             "into the page's output blocks")
    arguments = parser.parse_args(argv)
    if arguments.write and not arguments.full:
        parser.error("--write needs --full: a page shows the output of the run as shown.")
    failed = 0
    for page in [os.path.abspath(p) for p in arguments.pages] or pages():
        try:
            with tempfile.TemporaryDirectory(prefix="docs-example-") as workdir:
                ran = run_page(page, workdir, quick=not arguments.full)
            if arguments.write:
                print(f"{os.path.relpath(page, ROOT)}: {write_outputs(page, ran)} outputs rewritten")
            else:
                check(ran, quick=not arguments.full)
                print(f"{os.path.relpath(page, ROOT)}: {len(ran)} blocks ran as the page shows")
        except ExampleError as error:
            failed += 1
            print(f"FAILED {error}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
