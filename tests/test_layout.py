"""The layout's rules, read from the code itself (imports and sizes), so a change that breaks one fails here.

- Imports only go down: the core (``mlbert/``, with ``mlbert.io`` and ``mlbert.runtime``) imports none of
  the commands' packages; ``trainer/`` and ``exporter/`` never import ``mlbert.batch``; ``batch/`` never
  imports the trainer or the exporter (it is the lean runtime's command).
- No import circle between modules, counting imports inside functions too.
- Small modules with one job each: no module over ``MAX_MODULE_LINES`` and no function over
  ``MAX_FUNCTION_LINES`` unless its docstring gives the reason ("Longer than 60 lines ...").
"""

from __future__ import annotations

import ast
import glob
import os
from typing import Dict, Iterator, List, Set, Tuple

import pytest

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), os.pardir))
# Installed package -> folder (setup.cfg's package_dir).
PACKAGE_DIRS = {"mlbert": "mlbert", "mlbert.batch": "batch", "mlbert.trainer": "trainer", "mlbert.exporter": "exporter"}
MAX_MODULE_LINES = 420  # "about 400"
MAX_FUNCTION_LINES = 60
REASON = "Longer than 60 lines"


def _module_files(root: str = ROOT) -> Dict[str, str]:
    """Dotted module name -> file, for every product module."""
    found: Dict[str, str] = {}
    for package, folder in PACKAGE_DIRS.items():
        base = os.path.join(root, folder)
        for dirpath, dirnames, filenames in os.walk(base):
            rel = os.path.relpath(dirpath, base)
            if package == "mlbert" and rel.split(os.sep)[0] in ("batch", "trainer", "exporter"):
                continue
            dirnames[:] = [d for d in dirnames if d != "__pycache__"]
            parts = [] if rel == "." else rel.split(os.sep)
            for name in filenames:
                if not name.endswith(".py"):
                    continue
                stem = name[:-3]
                dotted = ".".join([package, *parts] + ([] if stem == "__init__" else [stem]))
                found[dotted] = os.path.join(dirpath, name)
    return found


MODULES = _module_files()


def _imports(dotted: str, path: str, modules: Dict[str, str] = MODULES) -> Iterator[Tuple[str, int]]:
    """Every mlbert module ``path`` imports (at the top or inside functions), with its line."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    package = dotted if path.endswith("__init__.py") else dotted.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            yield module, node.lineno
            for alias in node.names:  # ``from mlbert.io import columns`` imports a module
                if f"{module}.{alias.name}" in modules:
                    yield f"{module}.{alias.name}", node.lineno


def _owner(module: str) -> str:
    """Which part a module belongs to: core, batch, trainer or exporter."""
    for part in ("batch", "trainer", "exporter"):
        if module == f"mlbert.{part}" or module.startswith(f"mlbert.{part}."):
            return part
    return "core"


FORBIDDEN = {"core": {"batch", "trainer", "exporter"}, "trainer": {"batch"}, "exporter": {"batch"},
             "batch": {"trainer", "exporter"}}
# Published model cards print ``from mlbert.batch.preprocess import ...``: that alias module may import the core.
ALIASES = {"mlbert.batch.preprocess"}


def _upward_imports(modules: Dict[str, str], root: str = ROOT) -> List[str]:
    wrong = []
    for dotted, path in modules.items():
        for module, line in _imports(dotted, path, modules):
            if not module.startswith("mlbert"):
                continue
            if _owner(module) in FORBIDDEN[_owner(dotted)] and module not in ALIASES:
                wrong.append(f"{os.path.relpath(path, root)}:{line} imports {module}")
    return wrong


def test_imports_only_go_down():
    wrong = _upward_imports(MODULES)
    assert not wrong, "\n".join(wrong)


def _graph(modules: Dict[str, str]) -> Dict[str, Set[str]]:
    graph: Dict[str, Set[str]] = {}
    for dotted, path in modules.items():
        targets = set()
        for module, _ in _imports(dotted, path, modules):
            # ``from mlbert.io.x import y`` depends on mlbert.io.x; a package's __init__ is not a dependency edge.
            if module in modules and module != dotted and not modules[module].endswith("__init__.py"):
                targets.add(module)
        graph[dotted] = targets
    return graph


def _circles(modules: Dict[str, str]) -> List[List[str]]:
    graph = _graph(modules)
    state: Dict[str, int] = {}
    stack: List[str] = []
    circles: List[List[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                circles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return circles


def test_no_import_circle():
    circles = _circles(MODULES)
    assert not circles, "\n".join(" -> ".join(c) for c in circles)


def test_the_checks_catch_a_circle_and_an_upward_import(tmp_path):
    """The rules above are only worth something if they can fail: a tree with both faults, lazy imports included."""
    files = {
        "mlbert/__init__.py": "",
        "mlbert/io/__init__.py": "",
        "mlbert/io/records.py": "def make():\n    from mlbert.io.parquet_output import P\n",
        "mlbert/io/parquet_output.py": "from . import records\n",
        "batch/__init__.py": "",
        "batch/job.py": "",
        "trainer/__init__.py": "",
        "trainer/data.py": "from mlbert.batch.job import split_chunk\n",
        "exporter/__init__.py": "",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    modules = _module_files(str(tmp_path))
    assert _circles(modules) == [["mlbert.io.parquet_output", "mlbert.io.records", "mlbert.io.parquet_output"]]
    assert _upward_imports(modules, str(tmp_path)) == ["trainer/data.py:1 imports mlbert.batch.job"]


def _size_faults(path: str) -> List[str]:
    """What breaks the size rule in one file: too many lines, functions too long without a written reason."""
    text = open(path, encoding="utf-8").read()
    faults = []
    lines = text.count("\n")
    if lines > MAX_MODULE_LINES:
        faults.append(f"{os.path.relpath(path, ROOT)} has {lines} lines")
    for node in ast.walk(ast.parse(text, path)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            if length > MAX_FUNCTION_LINES and REASON not in (ast.get_docstring(node) or ""):
                faults.append(f"{os.path.relpath(path, ROOT)}: {node.name} ({length} lines, line {node.lineno})")
    return faults


@pytest.mark.parametrize("dotted", sorted(MODULES))
def test_small_modules_and_functions(dotted):
    assert not _size_faults(MODULES[dotted])


# The measurements and the scripts a user runs are read as often as the product: the same rule.
TOOL_FILES = sorted(glob.glob(os.path.join(ROOT, "benchmarks", "**", "*.py"), recursive=True)
                    + glob.glob(os.path.join(ROOT, "scripts", "*.py")))


@pytest.mark.parametrize("path", TOOL_FILES, ids=lambda p: os.path.relpath(p, ROOT))
def test_small_benchmark_and_script_modules(path):
    assert not _size_faults(path)


def test_the_size_rule_can_fail(tmp_path):
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES + 1))
    (tmp_path / "big.py").write_text("def long():\n" + body + "\n" * MAX_MODULE_LINES, encoding="utf-8")
    faults = _size_faults(str(tmp_path / "big.py"))
    assert len(faults) == 2 and "lines" in faults[0] and "long (62 lines, line 1)" in faults[1]
