"""``keras-sysid COMMAND [flags]``: keras_sysid's programs, one command each.

``keras-sysid --help`` lists the commands, ``keras-sysid COMMAND --help`` (or
``keras-sysid help COMMAND``) describes one and its flags; both exit 0.
``keras-sysid --version`` prints the package's version.

This module runs before the keras_sysid package is imported (the console
script starts in :mod:`keras_sysid_launcher`), so that ``--backend`` sets
``KERAS_BACKEND`` before Keras is imported: it imports only the standard
library at its top, and the command's module, which imports keras_sysid, only
once :mod:`keras_sysid.cli._backend` has run.
"""

import ast
import difflib
import importlib
import importlib.metadata
import os
import sys

PROGRAM = "keras-sysid"
# Each command is the module keras_sysid.cli.<command>: its docstring is the
# command's --help text, its first line the command's line in the listing.
COMMANDS = ("fit", "evaluate", "export", "insilico", "reproduce", "transfer", "benchmark", "zoo")
# The documentation site (mkdocs.yml's site_url); each command's module names its page in DOCS_PAGE.
DOCS_URL = "https://keras-sysid.readthedocs.io/en/latest/"


# absl's help flags print their help, then exit with status 1.
HELP_FLAGS = ("help", "helpshort", "helpfull", "helpxml")


def version() -> str:
    """keras_sysid's ``__version__``, read from the package's ``__init__.py`` (importing it would import Keras).

    Falls back to the installed distribution's version where the file holds no literal ``__version__``.
    """
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "__init__.py")
    try:
        with open(path, encoding="utf-8") as file:
            tree = ast.parse(file.read())
    except (OSError, SyntaxError):
        tree = ast.Module(body=[], type_ignores=[])
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, ast.AnnAssign) else []
        if (any(isinstance(target, ast.Name) and target.id == "__version__" for target in targets)
                and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
            return node.value.value
    try:
        return importlib.metadata.version("keras_sysid")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def describe(command: str) -> str:
    """The first line of ``command``'s docstring, read from its file: importing it would import Keras."""
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), f"{command}.py"), encoding="utf-8") as file:
        doc = ast.get_docstring(ast.parse(file.read())) or ""
    return doc.strip().split("\n", 1)[0].replace("``", "")


def docs_link(page: str = "") -> str:
    """The address of a documentation page (``"serving/"``; the site's start page by default)."""
    return DOCS_URL + page


def listing() -> str:
    """The usage line and every command with its description."""
    width = max(len(command) for command in COMMANDS)
    lines = [f"usage: {PROGRAM} COMMAND [flags]", "", "commands:"]
    lines += [f"  {command:<{width}}  {describe(command)}" for command in COMMANDS]
    lines += ["", f"{PROGRAM} COMMAND --help describes a command and its flags; --version prints the version.",
              f"Documentation: {docs_link()}"]
    return "\n".join(lines)


def run(command: str, argv: list[str]) -> None:
    """Runs ``command`` under absl with ``argv`` (the program's name, then the command's flags); exits."""
    from absl import app, flags

    from keras_sysid_launcher import load_early

    sys.argv = list(argv)  # _backend reads --backend from it; absl names the program after argv[0]
    load_early("keras_sysid.cli._backend")
    module = importlib.import_module(f"keras_sysid.cli.{command}")
    # absl's --help prints __main__'s docstring and the key flags of the module named argv[0];
    # __main__ is pip's script (or a tools/ shell), so both are made the command's.
    page = docs_link(getattr(module, "DOCS_PAGE", ""))
    sys.modules["__main__"].__doc__ = f"{module.__doc__.rstrip()}\n\nDocumentation: {page}\n"
    for flag in [*flags.FLAGS.get_key_flags_for_module(module), flags.FLAGS["backend"]]:
        flags.FLAGS.register_key_flag_for_module(argv[0], flag)
    # Asking for help is no failure: exit 0 once a help flag has printed its help (a bad flag still exits 1).
    app.define_help_flags()
    for name in HELP_FLAGS:
        if name in flags.FLAGS:
            flags.FLAGS[name].parse = _exiting_zero(flags.FLAGS[name].parse)
    try:
        app.run(module.main, argv=sys.argv)
    except BrokenPipeError:
        # The reader of stdout went away (keras-sysid zoo show NAME | head): stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(128 + 13)  # the status of a process ended by SIGPIPE


def _exiting_zero(parse):
    def parse_then_exit_zero(argument):
        try:
            parse(argument)
        except SystemExit as exit:
            raise SystemExit(0 if exit.code == 1 else exit.code) from None

    return parse_then_exit_zero


def main(argv=None):
    """``keras-sysid COMMAND [flags]``; ``argv`` defaults to ``sys.argv``. Returns an exit status or exits."""
    argv = list(sys.argv if argv is None else argv)
    arguments = argv[1:]
    if not arguments:
        print(listing(), file=sys.stderr)
        return 2
    command, rest = arguments[0], arguments[1:]
    if command in ("-h", "--help", "--helpshort", "--helpfull") or (command == "help" and not rest):
        print(listing())
        return 0
    if command in ("--version", "-V"):
        print(f"{PROGRAM} {version()}")
        return 0
    if command == "help":
        command, rest = rest[0], ["--help"]
    if command not in COMMANDS:
        if command.startswith("-"):
            problem = f"{command}: flags come after the command ({PROGRAM} COMMAND {command} ...)"
        else:
            close = difflib.get_close_matches(command, COMMANDS, 1)
            problem = f"unknown command {command!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
        print(f"{PROGRAM}: {problem}; the commands are {', '.join(COMMANDS)} ({PROGRAM} --help describes them).",
              file=sys.stderr)
        return 2
    run(command, [f"{PROGRAM} {command}", *rest])
