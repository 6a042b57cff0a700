"""Every public class, function and method of the checked packages has a docstring.

Read from the source with `ast` (nothing is imported, so a package with optional imports is checked as
well). Public means: the name does not start with `_`, it sits in a module whose name does not start with
`_` (a package's `__init__.py` counts as public), and every class around it is public. Skipped on purpose:
dunder methods (`__init__`, `__call__`, ... their meaning is the protocol's; the class says what it is),
functions nested inside functions (closures are implementation), `@overload` stubs (the implementation
carries the docstring) and property setters/deleters (the getter documents the property).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

PACKAGES = [
    "lmstudio_tray/core",
    "lmstudio_tray/api",
]


def _private(name: str) -> bool:
    return name.startswith("_")


def _is_dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__") and len(name) > 4


def _decorator_names(node: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    names: set[str] = set()
    for dec in node.decorator_list:
        target = dec.func if isinstance(dec, ast.Call) else dec
        if isinstance(target, ast.Name):
            names.add(target.id)
        elif isinstance(target, ast.Attribute):
            names.add(target.attr)  # `typing.overload`, `name.setter`, `name.deleter`
    return names


def _exempt(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    return bool(_decorator_names(node) & {"overload", "setter", "deleter"})


def undocumented(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """(line, `Class.method`) of each public definition in `tree` without a docstring, in source order."""
    yield from _walk(tree.body, "")


def _walk(body: list[ast.stmt], prefix: str) -> Iterator[tuple[int, str]]:
    for node in body:
        if isinstance(node, ast.ClassDef):
            if _private(node.name):
                continue
            name = f"{prefix}{node.name}"
            if ast.get_docstring(node) is None:
                yield node.lineno, name
            yield from _walk(node.body, name + ".")  # methods and nested public classes
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            # a function's own body is not walked: nested functions are implementation
            if _private(node.name) or _is_dunder(node.name) or _exempt(node):
                continue
            if ast.get_docstring(node) is None:
                yield node.lineno, f"{prefix}{node.name}"
        elif isinstance(node, (ast.If, ast.Try)):
            # `if TYPE_CHECKING:` / `if sys.platform == ...:` / `try: import ...` blocks define public names too
            for part in _branches(node):
                yield from _walk(part, prefix)


def _branches(node: ast.If | ast.Try) -> Iterator[list[ast.stmt]]:
    if isinstance(node, ast.If):
        yield node.body
        yield node.orelse
    else:
        yield node.body
        for handler in node.handlers:
            yield handler.body
        yield node.orelse
        yield node.finalbody


def public_modules(package: Path) -> Iterator[Path]:
    """The package's modules whose path has no component starting with `_` (`__init__.py` counts)."""
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package).parts
        if path.name == "__init__.py":
            parts = parts[:-1]
        if not any(_private(p) for p in parts):
            yield path


def missing_in(package: str, root: Path = ROOT) -> list[str]:
    """`path:line: name` of every undocumented public definition of `package` (a path relative to `root`)."""
    missing: list[str] = []
    for path in public_modules(root / package):
        rel = path.relative_to(root).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=rel)
        missing.extend(f"{rel}:{line}: {name}" for line, name in undocumented(tree))
    return missing


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_definition_has_a_docstring(package: str) -> None:
    modules = list(public_modules(ROOT / package))
    assert modules, f"{package} has no modules: is the path still right?"
    missing = missing_in(package)
    assert not missing, (
        f"{len(missing)} public definition(s) without a docstring (say what it is for, what it returns or raises, "
        "and on which thread it may run when that matters):\n  " + "\n  ".join(missing)
    )


# ---- the checker itself ---------------------------------------------------------------------------


_SAMPLE = '''
"""Module."""
from typing import overload

class Public:
    def method(self) -> None: ...
    def documented(self) -> None:
        """Yes."""
    def _private(self) -> None: ...
    def __init__(self) -> None: ...
    @property
    def value(self) -> int:
        """The value."""
        return 1
    @value.setter
    def value(self, v: int) -> None: ...
    class Inner:
        def deep(self) -> None: ...

class _Hidden:
    def method(self) -> None: ...

def outer() -> None:
    """Outer."""
    def nested() -> None: ...

async def coro() -> None: ...

@overload
def over(x: int) -> int: ...
def over(x: object) -> object:
    """Over."""
    return x

if True:
    def conditional() -> None: ...
'''


def test_the_checker_names_exactly_the_undocumented_public_definitions() -> None:
    found = [name for _, name in undocumented(ast.parse(_SAMPLE))]
    assert found == ["Public", "Public.method", "Public.Inner", "Public.Inner.deep", "coro", "conditional"]


def test_private_modules_are_skipped_and_package_inits_are_not(tmp_path: Path) -> None:
    (tmp_path / "pkg" / "_private").mkdir(parents=True)
    for rel in ("pkg/__init__.py", "pkg/a.py", "pkg/_b.py", "pkg/_private/__init__.py", "pkg/_private/c.py"):
        (tmp_path / rel).write_text("")
    names = [p.relative_to(tmp_path).as_posix() for p in public_modules(tmp_path / "pkg")]
    assert names == ["pkg/__init__.py", "pkg/a.py"]
