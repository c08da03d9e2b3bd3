"""Every module's public surface is its `__all__`, checked against `vars(module)` as encode/httpx's
tests/test_exported_members.py checks its package: each exported name exists, and each public name the module
defines is exported (helpers are `_prefixed`; `log`, a module's logger, is never exported). A package may also
export what its modules define."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from types import ModuleType

import pytest

import aggregator

MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(aggregator.__path__, "aggregator.")
    if not info.name.rsplit(".", 1)[-1].startswith("_")
)
# `annotations` is `from __future__ import annotations`; `log` a module's logger.
NEVER_EXPORTED = {"annotations", "log"}


def defined_at_top(module: ModuleType) -> set[str]:
    """Names the module's own source binds at its top level: functions, classes, assignments."""
    tree = ast.parse(inspect.getsource(module))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(target.id for target in node.targets if isinstance(target, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def defined_public_names(module: ModuleType) -> set[str]:
    """The public names of vars(module) that the module itself defines (not those it imports)."""
    own = defined_at_top(module)
    return {
        name
        for name, value in vars(module).items()
        if name in own and not name.startswith("_") and name not in NEVER_EXPORTED and not inspect.ismodule(value)
    }


# Edited in other branches at the time of issue 14 (the CLI's piped output, config start-up time, clustering
# speed): only the first half is checked here; the owners export their public names (or make them private).
ELSEWHERE: set[str] = set()


@pytest.mark.parametrize("name", ["aggregator", *MODULES])
def test_all_is_exactly_the_public_names(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{name} has no __all__"
    assert len(set(exported)) == len(exported), f"{name}.__all__ repeats a name"
    assert set(exported) <= set(vars(module)), f"{name}.__all__ names what it does not have"
    # what a module defines is exported or `_private`; a package may also export what its modules define
    missing = defined_public_names(module) - set(exported)
    assert name in ELSEWHERE or not missing, f"{name} defines public names it does not export: {sorted(missing)}"
