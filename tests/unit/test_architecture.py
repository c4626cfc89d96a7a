"""The package's shape, checked from its import graph: no cycles, no import from a lower layer to a
higher one, the use cases free of drivers, and only the composition root naming adapters.

The layers must also hold at run time: importing a module runs its packages' ``__init__``s and every
module-level import below it, so a port imported from a package whose ``__init__`` re-exports an
adapter loads that adapter's driver. The run-time checks follow that closure (statically, and once
for real in a subprocess)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import memcompress

ROOT = Path(memcompress.__file__).parent

# Lowest first. A module may import modules of its own layer or a lower one.
LAYERS: list[tuple[str, ...]] = [
    (
        "memcompress",
        "memcompress.keys",
        "memcompress.timing",
        "memcompress.probe",
        "memcompress.layouts",
        "memcompress.models",
        "memcompress.metrics",
        "memcompress.cron",
        "memcompress.redaction",
        "memcompress.logs",
        "memcompress.settings",
        "memcompress.queue",
        "memcompress.embedded",
    ),
    ("memcompress.repositories", "memcompress.summarizers"),
    ("memcompress.jobs",),
    ("memcompress.bootstrap",),
    ("memcompress.testing",),  # test support: tests, benchmarks and the demo's synthetic histories
    ("memcompress.worker", "memcompress.cli", "memcompress.web", "memcompress.demo", "memcompress.__main__"),
]
# What a module outside the adapter packages and the composition root may import from them.
PORT_MODULES = {
    "memcompress.repositories": ("memcompress.repositories.protocols", "memcompress.repositories.errors"),
    "memcompress.summarizers": (
        "memcompress.summarizers.base",
        "memcompress.summarizers.carry",
        "memcompress.summarizers.guard",  # pure checks of an answer (no adapter)
        "memcompress.summarizers.language",  # the language check, used by the guard
    ),
}
MAY_NAME_ADAPTERS = (
    "memcompress.repositories",
    "memcompress.summarizers",
    "memcompress.bootstrap",
    "memcompress.testing",
)


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(ROOT.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def _imports(tree: ast.AST, *, at_import: bool = False) -> Iterator[str]:
    """Every module named by an import statement, at any depth, outside ``if TYPE_CHECKING:``;
    ``at_import``: only those run when the module is imported (not inside a function)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            continue
        if at_import and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:  # `from pkg import module` names the module itself
                full = f"{node.module}.{alias.name}"
                yield full if full in MODULES else node.module
        yield from _imports(node, at_import=at_import)


TREES = {name: ast.parse(path.read_text(encoding="utf-8")) for name, path in MODULES.items()}
GRAPH = {name: set(_imports(tree)) for name, tree in TREES.items()}
AT_IMPORT = {name: set(_imports(tree, at_import=True)) for name, tree in TREES.items()}


def _with_packages(module: str) -> list[str]:
    """``a.b.c`` → ``a``, ``a.b``, ``a.b.c``: importing a module first runs its packages' ``__init__``s."""
    parts = module.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def _loaded_by(module: str) -> set[str]:
    """Every module importing ``module`` runs (ours followed, others by name only)."""
    loaded: set[str] = set()
    pending = _with_packages(module)
    while pending:
        name = pending.pop()
        if name in loaded:
            continue
        loaded.add(name)
        if name in AT_IMPORT:
            pending.extend(p for target in AT_IMPORT[name] for p in _with_packages(target))
    return loaded


def _layer(module: str) -> int:
    for index, members in enumerate(LAYERS):
        if any(module == m or module.startswith(m + ".") for m in members if m != "memcompress"):
            return index
    assert module == "memcompress", f"{module} is in no layer: add it to LAYERS"
    return 0


def _internal(module: str) -> list[str]:
    return sorted(m for m in GRAPH[module] if m.startswith("memcompress"))


def test_every_module_is_in_a_layer() -> None:
    for module in MODULES:
        _layer(module)


def test_no_import_goes_up_a_layer() -> None:
    upward = [
        f"{module} (layer {_layer(module)}) imports {target} (layer {_layer(target)})"
        for module in MODULES
        for target in _internal(module)
        if _layer(target) > _layer(module)
    ]
    assert upward == []


def test_no_import_cycles() -> None:
    state: dict[str, str] = {}
    cycles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in _internal(module):
            if target not in MODULES:
                continue
            if state.get(target) == "open":
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = "done"

    for module in MODULES:
        if module not in state:
            visit(module, [module])
    assert cycles == []


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("memcompress.jobs", ("redis", "pymongo")),
        ("memcompress.cli", ("pymongo",)),
        ("memcompress.worker", ("pymongo",)),
    ],
)
def test_drivers_stay_out_of(package: str, forbidden: tuple[str, ...]) -> None:
    found = [
        f"{module} imports {target}"
        for module in MODULES
        if module == package or module.startswith(package + ".")
        for target in GRAPH[module]
        if target.split(".")[0] in forbidden
    ]
    assert found == []


# Drivers a package must not load when imported, for all that its import lines say.
AT_IMPORT_FORBIDDEN = {
    "memcompress.jobs": ("pymongo", "bson", "motor", "redis", "arq", "openai"),
    "memcompress.bootstrap": ("pymongo", "bson", "motor", "arq", "openai"),
    "memcompress.cli": ("pymongo", "bson", "motor", "arq", "openai"),
}


@pytest.mark.parametrize(("package", "forbidden"), AT_IMPORT_FORBIDDEN.items())
def test_importing_loads_no_driver(package: str, forbidden: tuple[str, ...]) -> None:
    found = sorted(
        f"{module} loads {target}"
        for module in MODULES
        if module == package or module.startswith(package + ".")
        for target in _loaded_by(module)
        if target.split(".")[0] in forbidden
    )
    assert found == []


def test_the_cli_starts_without_drivers() -> None:
    """The same, for real: the use cases imported and ``memcompress --help`` run in a fresh process."""
    code = (
        "import json, sys\n"
        "import memcompress.jobs\n"
        "from memcompress.cli.app import cli\n"
        "cli(['--help'], standalone_mode=False)\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    lines = result.stdout.splitlines()
    assert "Usage: " in result.stdout
    loaded = set(json.loads(lines[-1]))
    assert loaded.isdisjoint(AT_IMPORT_FORBIDDEN["memcompress.cli"])
    assert {"click", "memcompress"} <= loaded  # the list is the real one


def test_the_run_time_check_follows_package_inits() -> None:
    """A guard on the guard: importing a port runs its package's ``__init__``, and function bodies
    (``bootstrap``'s adapter imports) are left out."""
    assert "memcompress.repositories" in _loaded_by("memcompress.repositories.protocols")
    assert "memcompress.repositories.database" in GRAPH["memcompress.bootstrap"]
    assert "memcompress.repositories.database" not in _loaded_by("memcompress.bootstrap")


def test_only_the_composition_root_names_adapters() -> None:
    found = [
        f"{module} imports {target}"
        for module in MODULES
        if not any(module == m or module.startswith(m + ".") for m in MAY_NAME_ADAPTERS)
        for target in _internal(module)
        for package, ports in PORT_MODULES.items()
        if (target == package or target.startswith(package + ".")) and target not in ports
    ]
    assert found == []


def test_the_checks_see_imports_inside_functions() -> None:
    """A guard on the guard: imports inside functions (``cli``'s lazy ones) are in the graph."""
    assert "memcompress.demo" in GRAPH["memcompress.cli.admin_commands"]
