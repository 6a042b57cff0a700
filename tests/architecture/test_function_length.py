"""No function in lmstudio_tray is longer than 100 lines, counted from its `def` to its last line."""

from __future__ import annotations

from tests.architecture.helpers import functions, modules

MAX_LINES = 100


def test_no_function_is_longer_than_100_lines() -> None:
    too_long = []
    for path, tree in modules():
        for name, node in functions(tree):
            assert node.end_lineno is not None
            lines = node.end_lineno - node.lineno + 1
            if lines > MAX_LINES:
                too_long.append(f"{path}:{node.lineno} {name} has {lines} lines")
    assert not too_long, (f"functions over {MAX_LINES} lines (split them into named helpers):\n  "
                          + "\n  ".join(too_long))


def test_the_count_starts_at_the_def_and_takes_nested_functions_too() -> None:
    import ast

    source = "@decorator\nasync def outer():\n" + "    x = 1\n" * 3 + "    def inner():\n        return 2\n"
    found = {name: node.end_lineno - node.lineno + 1 for name, node in functions(ast.parse(source))
             if node.end_lineno is not None}
    assert found == {"outer": 6, "outer.inner": 2}
