"""No module-global registries: no function in lmstudio_tray changes state that lives in a module.

Such state (a dict keyed by the core, the team profiles found by the last config load...) is shared by every
core and surface of the process and outlives them; it belongs to an object that is handed to whoever needs
it, through constructors. The walk finds a module-level name that a function rebinds (`global`), assigns an
item of (`NAME[...] = ...`, `del NAME[...]`) or calls a mutating method of (`NAME.append(...)`, ...).
"""

from __future__ import annotations

import ast

from tests.architecture.helpers import modules

MUTATORS = frozenset({"append", "extend", "insert", "add", "update", "setdefault", "pop", "popitem", "clear",
                      "discard", "remove"})
# Process-wide by nature, not registries of instances:
ALLOWED = {
    # the log redaction: every log handler of the process reads the secrets any part registered
    ("lmstudio_tray/core/support/logs.py", "_secrets"),
    ("lmstudio_tray/core/support/logs.py", "_secret_re"),
    # the TLS context (system CAs + certifi), made once per process on the first https:// request
    ("lmstudio_tray/core/lmstudio/http1.py", "_default_ssl"),
}


def module_names(tree: ast.Module) -> set[str]:
    names = set()
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, ast.AnnAssign) else []
        names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def changed_in_functions(tree: ast.Module, names: set[str]) -> set[tuple[str, str]]:
    """(name, how) for each module-level name some function changes."""
    found = set()
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(fn):
            if isinstance(node, ast.Global):
                found.update((name, "global") for name in node.names)
            elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
                targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
                found.update((t.value.id, "item") for t in targets
                             if isinstance(t, ast.Subscript) and isinstance(t.value, ast.Name)
                             and t.value.id in names)
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                  and node.func.attr in MUTATORS and isinstance(node.func.value, ast.Name)
                  and node.func.value.id in names):
                found.add((node.func.value.id, node.func.attr))
    return found


def test_no_function_changes_module_level_state() -> None:
    found = []
    for path, tree in modules():
        for name, how in sorted(changed_in_functions(tree, module_names(tree))):
            if (path, name) not in ALLOWED:
                found.append(f"{path}: {name} ({how})")
    assert not found, ("module-level state changed by functions (own it in an object passed through "
                       "constructors):\n  " + "\n  ".join(found))


def test_the_walk_finds_each_kind_of_change() -> None:
    source = ("_by_core = {}\n_seen = set()\n_last = None\nTABLE = {'a': 1}\n"
              "def register(core, x):\n    _by_core[core] = x\n    _seen.add(x)\n"
              "def forget():\n    global _last\n    _last = None\n"
              "def read():\n    return TABLE['a']\n")
    tree = ast.parse(source)
    assert changed_in_functions(tree, module_names(tree)) == {("_by_core", "item"), ("_seen", "add"),
                                                              ("_last", "global")}
