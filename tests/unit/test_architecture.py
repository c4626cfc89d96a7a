"""The package's shape, checked from its import graph: no cycles, no import from a lower layer to a
higher one, the use cases free of drivers, and only the composition root naming adapters."""

from __future__ import annotations

import ast
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
    ("memcompress.worker", "memcompress.cli", "memcompress.demo", "memcompress.__main__"),
    ("memcompress.testing",),  # test support: tests and benchmarks only
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


def _imports(tree: ast.AST) -> Iterator[str]:
    """Every module named by an import statement, at any depth, outside ``if TYPE_CHECKING:``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:  # `from pkg import module` names the module itself
                full = f"{node.module}.{alias.name}"
                yield full if full in MODULES else node.module
        yield from _imports(node)


GRAPH = {name: set(_imports(ast.parse(path.read_text(encoding="utf-8")))) for name, path in MODULES.items()}


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
