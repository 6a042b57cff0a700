"""Every module path docs/architecture.md names exists, so the map of the code stays true to the code.

What is checked:
- the layout block (the first fenced block, starting with `lmstudio_tray/`): each entry that ends in `/` is a
  folder, nested two spaces per level, and a file named in backticks on its line is a file of that folder;
- a path with a slash (`core/support/lock.py`, `api/`, tests/loop_guard.py), in backticks or in plain text when
  it ends in a file extension: relative to the repository, to lmstudio_tray/, or to the package of the section.
  Only paths whose first part is a folder or file there are taken as ours: `bin/lms` and `.internal/` are LM
  Studio's, `/v1/...` are routes;
- a bare file name in backticks (`http1.py`, `lmstudio-tray.ts`): a file of the package the section's heading
  names (`### core/lmstudio/`); outside such a section it is an error, since nobody could tell where it is;
- a dotted name in backticks that starts with `core.` or `lmstudio_tray.` (`core.hooks.verdict`): a module or
  package, or a name defined in one.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
PACKAGE = ROOT / "lmstudio_tray"
DOC = ROOT / "docs" / "architecture.md"

SPAN = re.compile(r"`([^`\n]+)`")
PLAIN_PATH = re.compile(r"(?<![\w/.`-])((?:[\w.-]+/)+[\w.-]+\.(?:py|ts|sh|md|toml))(?![\w/`])")
DOTTED = re.compile(r"^(?:core|lmstudio_tray)(?:\.[A-Za-z_]\w*)+$")
BARE_FILE = re.compile(r"^[\w.-]+\.(?:py|ts)$")
HEADING = re.compile(r"^#{1,6}\s")
ENTRY = re.compile(r"^( *)(\S+/)(?=\s|$)")


@dataclass(frozen=True)
class Named:
    line: int
    written: str
    problem: str | None


def _ours(path: str, bases: list[Path]) -> list[Path]:
    """The bases under which `path`'s first part exists: where this path would be one of ours."""
    first = path.split("/", 1)[0]
    return [base for base in bases if first and (base / first).exists()]


def _check_path(path: str, bases: list[Path]) -> str | None:
    candidates = _ours(path, bases)
    if not candidates:
        return "skip"
    if any((base / path).exists() for base in candidates):
        return None
    where = ", ".join(str(b.relative_to(ROOT)) or "." for b in candidates)
    return f"no such file or folder (looked under {where})"


def _check_dotted(name: str) -> str | None:
    parts = name.split(".")
    if parts[0] == "core":
        parts.insert(0, "lmstudio_tray")
    for cut in range(len(parts), 0, -1):
        rel = Path(*parts[:cut])
        if (ROOT / rel).with_suffix(".py").is_file() or (ROOT / rel / "__init__.py").is_file():
            obj: object = importlib.import_module(".".join(parts[:cut]))
            for attr in parts[cut:]:
                if not hasattr(obj, attr):
                    return f"{'.'.join(parts[:cut])} has no {attr!r}"
                obj = getattr(obj, attr)
            return None
    return "no such module"


def _bases(context: Path | None) -> list[Path]:
    return [b for b in (context, PACKAGE, ROOT) if b is not None]


def _spans(text: str, lineno: int, context: Path | None) -> Iterator[Named]:
    for m in SPAN.finditer(text):
        span = m.group(1).strip()
        if DOTTED.match(span):
            yield Named(lineno, span, _check_dotted(span))
        elif BARE_FILE.match(span):
            if context is None:
                yield Named(lineno, span, "a bare file name outside a section whose heading names its package")
            elif not (context / span).is_file():
                yield Named(lineno, span, f"not a file of {context.relative_to(ROOT)}/")
            else:
                yield Named(lineno, span, None)
        elif "/" in span and " " not in span and not span.startswith("/") and "://" not in span:
            problem = _check_path(span, _bases(context))
            if problem != "skip":
                yield Named(lineno, span, problem)


def _plain(text: str, lineno: int, context: Path | None) -> Iterator[Named]:
    outside = SPAN.sub(lambda m: " " * len(m.group(0)), text)
    for m in PLAIN_PATH.finditer(outside):
        problem = _check_path(m.group(1), _bases(context))
        if problem != "skip":
            yield Named(lineno, m.group(1), problem)


def _layout(lines: list[tuple[int, str]]) -> Iterator[Named]:
    stack: list[str] = []
    for lineno, line in lines:
        m = ENTRY.match(line)
        if m is None:
            continue
        depth = len(m.group(1)) // 2
        stack[depth:] = [m.group(2)]
        folder = "".join(stack)
        yield Named(lineno, folder, None if (ROOT / folder).is_dir() else "no such folder")
        for span in SPAN.finditer(line):
            if BARE_FILE.match(span.group(1)):
                name = span.group(1)
                yield Named(lineno, folder + name, None if (ROOT / folder / name).is_file() else "no such file")


def _heading_context(line: str) -> Path | None:
    for m in SPAN.finditer(line):
        span = m.group(1)
        if span.endswith("/"):
            for base in (PACKAGE, ROOT):
                if (base / span).is_dir():
                    return base / span
    return None


def named_paths(text: str) -> list[Named]:
    """Every module path `text` (Markdown) names, each with what is wrong with it (None: it exists)."""
    found: list[Named] = []
    context: Path | None = None
    fence: list[tuple[int, str]] | None = None
    layout_seen = False
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.startswith("```"):
            if fence is not None:
                if not layout_seen and fence and fence[0][1].startswith("lmstudio_tray/"):
                    found.extend(_layout(fence))
                    layout_seen = True
                fence = None
            else:
                fence = []
            continue
        if fence is not None:
            fence.append((lineno, line))
            continue
        if HEADING.match(line):
            context = _heading_context(line)
        found.extend(_spans(line, lineno, context))
        found.extend(_plain(line, lineno, context))
    return found


def test_every_module_path_in_the_architecture_doc_exists() -> None:
    named = named_paths(DOC.read_text(encoding="utf-8"))
    written = {n.written for n in named}
    # the extraction reaches every kind of name (a broken one must not pass by finding nothing)
    assert {"lmstudio_tray/core/lmstudio/", "http1.py", "core/support/lock.py", "core.hooks.verdict",
            "tests/loop_guard.py", "autostart/linux.py"} <= written
    wrong = [f"docs/architecture.md:{n.line}: {n.written}: {n.problem}" for n in named if n.problem]
    assert not wrong, "module paths that do not exist:\n  " + "\n  ".join(wrong)


def test_the_checker_finds_what_does_not_exist() -> None:
    sample = "\n".join([
        "```",
        "lmstudio_tray/",
        "  core/      the core",
        "    nowhere/ gone",
        "bench/       numbers (`run_all.py`, `missing_bench.py`)",
        "```",
        "## core",
        "| `models.py` | bare, but no package named |",
        "### `core/lmstudio/`: talking to LM Studio",
        "| `http1.py` | fine | `client.py` moved to `core/lmstudio/gone.py`, see tests/loop_guard.py |",
        "| `nope.py` | `core.hooks.verdict`, `core.verdict`, `core.models.NoSuchThing`, `bin/lms`, `/v1/models` |",
    ])
    problems = {n.written: n.problem for n in named_paths(sample)}
    assert problems == {
        "lmstudio_tray/": None,
        "lmstudio_tray/core/": None,
        "lmstudio_tray/core/nowhere/": "no such folder",
        "bench/": None,
        "bench/run_all.py": None,
        "bench/missing_bench.py": "no such file",
        "models.py": "a bare file name outside a section whose heading names its package",
        "core/lmstudio/": None,
        "http1.py": None,
        "client.py": None,
        "core/lmstudio/gone.py": "no such file or folder (looked under lmstudio_tray)",
        "tests/loop_guard.py": None,
        "nope.py": "not a file of lmstudio_tray/core/lmstudio/",
        "core.hooks.verdict": None,
        "core.verdict": "lmstudio_tray.core has no 'verdict'",
        "core.models.NoSuchThing": "lmstudio_tray.core.models has no 'NoSuchThing'",
    }
