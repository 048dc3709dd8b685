"""The package's parts and the imports that must never exist (../shared/design/one-path.md), checked on the code.

Every ``import`` and ``from ... import`` in the package counts, at the top of
a module or inside a function, so a lazy import cannot hide an arrow.
"""

import ast
import os

import pytest

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "keras_sysid")

# Each part, by module path prefix (the first that matches wins).
PARTS = [
    ("ExperimentCLI", ("keras_sysid.cli.reproduce", "keras_sysid.cli.benchmark", "keras_sysid.cli.transfer")),
    ("ProductCLI", ("keras_sysid.cli.fit", "keras_sysid.cli.evaluate", "keras_sysid.cli.export",
                    "keras_sysid.cli.insilico", "keras_sysid.cli.zoo", "keras_sysid.cli.main",
                    "keras_sysid.cli._backend", "keras_sysid.cli._recordings", "keras_sysid.cli")),
    ("Experiments", ("keras_sysid.experiments",)),
    ("Recipes", ("keras_sysid.recipes",)),
    ("Figures", ("keras_sysid.plots",)),
    ("Insilico", ("keras_sysid.insilico",)),
    ("Zoo", ("keras_sysid.zoo", "keras_sysid.export")),
    ("Scoring", ("keras_sysid.metrics", "keras_sysid.evaluation", "keras_sysid.trial_variability",
                 "keras_sysid.consistency", "keras_sysid.clustering")),
    ("Training", ("keras_sysid.training", "keras_sysid.runs", "keras_sysid.distribute", "keras_sysid.devices",
                  "keras_sysid.resume")),
    ("Recording", ("keras_sysid.data.recording", "keras_sysid.data.formats")),
    ("Data", ("keras_sysid.data",)),
    ("Model", ("keras_sysid.models", "keras_sysid.ensemble", "keras_sysid.multisession", "keras_sysid.transfer",
               "keras_sysid.inference_forms", "keras_sysid.simulators")),
    ("Layers", ("keras_sysid.cores", "keras_sysid.readouts", "keras_sysid.behavior", "keras_sysid.regularizers",
                "keras_sysid.losses", "keras_sysid.positions")),
    ("Base", ("keras_sysid.registry", "keras_sysid.validation", "keras_sysid.normalization", "keras_sysid.cloning",
              "keras_sysid.atomic_files")),
    ("Face", ("keras_sysid.__main__", "keras_sysid")),
]
LIBRARY = {"Base", "Layers", "Model", "Recording", "Data", "Training", "Scoring", "Zoo", "Insilico", "Figures",
           "Recipes"}

# (from part, to part, why): imports that must never exist.
NEVER = [
    *[("Layers", to, "a layer knows nothing of files, fits or the model around it")
      for to in ("Data", "Recording", "Training", "Model")],
    ("Model", "Training", "the model does not train itself: distribution fixes are applied by training"),
    ("Model", "Zoo", "the zoo imports models, never back"),
    ("Model", "Data", "a model takes arrays, not files"),
    ("Model", "Recording", "a model takes arrays, not recordings"),
    ("Data", "Model", "data knows no model"),
    ("Data", "Training", "data knows no fit"),
    ("Scoring", "Training", "scores do not depend on how a model was fitted"),
    *[("Insilico", to, "in-silico experiments run on any model") for to in ("Data", "Recording", "Training", "Zoo")],
    *[(part, to, "the library sits below experiments and commands")
      for part in sorted(LIBRARY) for to in ("Experiments", "ProductCLI", "ExperimentCLI")],
    ("ProductCLI", "Experiments", "a product command runs library recipes"),
    ("Experiments", "ProductCLI", "experiments sit above the library, beside the commands"),
]


def part_of(module: str) -> str:
    for part, prefixes in PARTS:
        if any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes):
            return part
    raise AssertionError(f"{module} belongs to no part: add it to PARTS")


def _modules():
    """``{module name: path}`` of every module of the package."""
    found = {}
    root = os.path.dirname(PACKAGE)
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                dotted = os.path.relpath(path, root)[:-3].replace(os.sep, ".")
                found[dotted.removesuffix(".__init__")] = path
    return found


MODULES = _modules()


def _imports(module: str, path: str) -> set[str]:
    """The package's modules that ``module`` imports (``from keras_sysid import x`` names module ``x`` if it is one)."""
    with open(path, encoding="utf-8") as file:
        tree = ast.parse(file.read())
    package = module if path.endswith("__init__.py") else module.rsplit(".", 1)[0]
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                imported.add(candidate if candidate in MODULES else base)
    return {name for name in imported if name in MODULES and name != module}


GRAPH = {module: _imports(module, path) for module, path in MODULES.items()}


def test_every_module_belongs_to_a_part():
    assert {module: part_of(module) for module in MODULES}


@pytest.mark.parametrize("source, target, why", NEVER)
def test_no_forbidden_import(source, target, why):
    offending = sorted(f"{module} -> {imported}" for module, imports in GRAPH.items() if part_of(module) == source
                       for imported in imports if part_of(imported) == target)
    assert not offending, f"{source} must not import {target} ({why}): {offending}"


def test_no_import_cycles():
    """Tarjan's strongly connected components over every import, lazy ones included."""
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in GRAPH[node]:
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            # A package and the children its __init__ gathers are one unit, not a cycle.
            if len(component) > 1 and not _package_and_children(component):
                cycles.append(sorted(component))

    for module in sorted(GRAPH):
        if module not in index:
            visit(module)
    assert cycles == []


def _package_and_children(component) -> bool:
    shortest = min(component, key=len)
    return all(member == shortest or member.startswith(shortest + ".") for member in component)


def test_no_product_command_imports_experiments():
    product = [module for module in MODULES if part_of(module) == "ProductCLI"]
    assert product
    counts = {module: sorted(m for m in GRAPH[module] if part_of(m) == "Experiments") for module in product}
    assert all(not imported for imported in counts.values()), counts


def test_the_model_class_stays_small():
    """The model class stays small: 535 lines with the zoo's preset methods and pruning in it, 472 without."""
    with open(MODULES["keras_sysid.models"], encoding="utf-8") as file:
        tree = ast.parse(file.read())
    (model_class,) = [node for node in tree.body
                      if isinstance(node, ast.ClassDef) and node.name == "SystemIdentificationModel"]
    lines = model_class.end_lineno - model_class.lineno + 1
    assert lines <= 472, lines
