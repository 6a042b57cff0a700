"""What a text tells people to run or set, and whether the real parser and config schema agree.

A text is *generated* (a verdict, an error, a notification, a tool answer: written by the code for one
situation, so every command in it must work exactly as written) or *static* (docs, string literals in the
source, the plugin). Static texts may use usage syntax: `a|b|c` alternatives (each one is checked),
`[--json]` optional parts (checked with and without them), placeholders such as KEY, NAME, N, FILE or
`<pool>` (replaced by sample values) and `# comments`; they may also mention a command by name without
its required arguments (`lmstudio-tray config import`). Generated texts get none of that leniency.

Where commands are found:
- code spans: `...` (markdown, messages) and <code>...</code> (the dashboard's HTML);
- code-block lines starting with `lmstudio-tray` (in ```console blocks only the `$ ` lines);
- outside code, `lmstudio-tray` at the start of a text or line, or after ": " or "run ", followed by one of
  its commands ("To do it anyway: lmstudio-tray unload ..."); "lmstudio-tray is already running" is prose
  and "lmstudio-tray stats: ..." a label. A command put together at run time (`lmstudio-tray {words}`) is
  left to the generated texts.
A command that goes on after its closing backtick (`lmstudio-tray server start` --instance gpu) is a
problem of its own: whoever pastes the code span runs something else.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import functools
import importlib
import importlib.util
import io
import re
import shlex
import types
import typing
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from lmstudio_tray.cli import _command_of, build_parser, default_to_run
from lmstudio_tray.core.config.schema import Config, ProfileConfig
from lmstudio_tray.core.config.team import TEAM_ONLY, ModelPolicy, TeamMeta
from lmstudio_tray.emulator.cli import build_parser as build_emulator_parser

ROOT = Path(__file__).resolve().parents[2]
PROGRAM = "lmstudio-tray"

# Sample values for the placeholders of usage lines; anything else in capitals becomes "sample".
SAMPLES = {
    "KEY": "qwen/qwen3-4b-2507",
    "MODEL": "qwen/qwen3-4b-2507",
    "A": "qwen/qwen3-4b-2507",
    "B": "google/gemma-3-12b",
    "ID": "qwen/qwen3-4b-2507:2",
    "NAME": "gpu-box",
    "NEW": "work",
    "POOL": "team",
    "N": "4096",
    "DAYS": "30",
    "SINCE": "7d",
    "SIZE": "8GB",
    "DIR": "/tmp/team-usage",
    "FILE": "settings.toml",
    "PATH": "/tmp/lmstudio-tray.toml",
    "URL": "http://10.0.0.7:1234",
    "H": "10.0.0.7",
    "HOST": "10.0.0.7",
    "VALUE": "true",
    "TASK": "coding",
    "Q": "Q4",
}
FORMATTED = "{}"  # where an f-string inserts a value (see python_texts)
FORMATTED_SAMPLE = "1"  # valid wherever a name, a key or a number goes
SEPARATORS = {"&&", "||", ";", "&"}
PLACEHOLDER = re.compile(r"^(?:[A-Z][A-Z0-9_]*|<[\w-]+>)$")
CODE_SPAN = re.compile(r"`([^`]+)`|<code>(.*?)</code>")
AFTER_SPAN = re.compile(r"`(lmstudio-tray(?: [^`]*)?)`( -{1,2}[A-Za-z][\w-]*(?: [^\s,;`]+)?)")
LOOSE = re.compile(r"(?:^|(?<=: )|(?<=\brun ))lmstudio-tray(?= |$)", re.MULTILINE)
LOOSE_END = re.compile(r" \(|; |, | — |\. |\.$|[`\"']")


@dataclass(frozen=True)
class Text:
    source: str  # where a person meets it: "docs/endpoint.md", "verdict not_loaded on 'jit'", ...
    text: str
    generated: bool = False
    line: int | None = None  # the file line the text starts on (a markdown paragraph spans several)
    toml: bool = False  # a line of a TOML example

    def at(self, offset: int) -> str:
        """Where the part of the text at `offset` is."""
        if self.line is None:
            return self.source
        return f"{self.source}:{self.line + self.text.count(chr(10), 0, offset)}"


@dataclass(frozen=True)
class Named:
    source: str
    command: str  # as written (without backticks or a `$ ` prompt)
    generated: bool


@dataclass(frozen=True)
class Problem:
    source: str
    command: str
    error: str

    def __str__(self) -> str:
        return f"{self.source}: `{self.command}`: {self.error}"


# ---- the real parser ---------------------------------------------------------------------------------


@functools.cache
def full_parser() -> argparse.ArgumentParser:
    return build_parser()


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _only_command_words(argv: list[str]) -> bool:
    parser = full_parser()
    for word in argv:
        sub = subcommands(parser).get(word)
        if sub is None:
            return False
        parser = sub
    return True


def parse_error(argv: list[str], *, mention_ok: bool = False) -> str | None:
    """What the real command line says about `lmstudio-tray ARGV` (parse only, nothing runs); None: fine.

    Mirrors `cli.main`: `emulator` hands its arguments to the emulator's parser, no command means `run`.
    `mention_ok` accepts a bare command named without its required arguments.
    """
    if argv[:1] == ["emulator"]:
        parser, args = build_emulator_parser(), argv[1:]
    else:
        parser, args = full_parser(), (argv if _command_of(argv) is not None else default_to_run(argv))
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            parser.parse_args(args)
    except SystemExit as exc:
        if exc.code in (0, None):  # --help, --version
            return None
        lines = err.getvalue().strip().splitlines()
        message = lines[-1] if lines else f"exit status {exc.code}"
        if mention_ok and "arguments are required" in message and _only_command_words(argv):
            return None
        return message
    return None


# ---- finding commands in a text ----------------------------------------------------------------------


@functools.cache
def command_words() -> frozenset[str]:
    return frozenset(subcommands(full_parser()))


def _loose(text: str) -> Iterator[tuple[int, str]]:
    """`lmstudio-tray CMD ...` outside code spans, where it reads as a command (see the module doc)."""
    for m in LOOSE.finditer(text):
        rest = text[m.end():].split("\n", 1)[0]
        words = LOOSE_END.split(rest, maxsplit=1)[0].split()
        if not words or (words[0] not in command_words() and not words[0].startswith("-")):
            continue  # the program's name in a sentence
        if any(w.endswith(":") for w in words):
            continue  # a label: "lmstudio-tray autostart enable: failed"
        yield m.start(), " ".join([PROGRAM, *words])


def _spans(text: str) -> Iterator[tuple[int, str]]:
    for m in CODE_SPAN.finditer(text):
        span = (m.group(1) if m.group(1) is not None else m.group(2)).strip().replace("\\|", "|")
        span = span.removeprefix("$ ")
        if span == PROGRAM or span.startswith(PROGRAM + " "):
            yield m.start(), " ".join(span.split())


def commands_in(text: Text) -> tuple[list[Named], list[Problem]]:
    """The commands a prose text names, and the ones it splits with a misplaced backtick."""
    outside = CODE_SPAN.sub(lambda m: " " * len(m.group(0)), text.text)
    found = [Named(text.at(at), c, text.generated) for at, c in [*_spans(text.text), *_loose(outside)]]
    problems = [
        Problem(text.at(m.start()), m.group(1) + "`" + m.group(2),
                "the command goes on after its closing backtick; pasting the code span runs something else")
        for m in AFTER_SPAN.finditer(text.text)
    ]
    return found, problems


# ---- usage syntax -> concrete commands ---------------------------------------------------------------

Item = str | list["Item"]  # a word, "|" between alternatives, or an optional group


def _words(command: str) -> list[list[str]]:
    """Shell words of each `lmstudio-tray` command in a line (`a && b`, `# comment` dropped)."""
    command = re.sub(r"<([\w-]+)>", lambda m: m.group(1).upper().replace("-", "_"), command)
    lexer = shlex.shlex(command, posix=True, punctuation_chars="|&;")
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    for token in lexer:
        if token in SEPARATORS:
            commands.append([])
        else:
            commands[-1].append(token)
    return [c[1:] for c in commands if c[:1] == [PROGRAM]]


def _tree(words: list[str]) -> list[Item]:
    atoms = [a for w in words for a in re.split(r"(\[|\])", w) if a]
    root: list[Item] = []
    stack = [root]
    for atom in atoms:
        if atom == "[":
            group: list[Item] = []
            stack[-1].append(group)
            stack.append(group)
        elif atom == "]" and len(stack) > 1:
            stack.pop()
        else:
            stack[-1].append(atom)
    return root


def _expand(seq: list[Item], full: bool) -> list[list[str]]:
    """Concrete word lists. `a b|c d` means a, then b or `c d` (the usage lines' convention);
    optional groups are all present (`full`) or all absent."""
    segments: list[list[Item]] = [[]]
    for item in seq:
        if item == "|":
            segments.append([])
        else:
            segments[-1].append(item)
    if len(segments) > 1:
        prefix, alternatives = segments[0][:-1], [segments[0][-1:], *segments[1:]]
        return [p + a for p in _plain(prefix, full) for alt in alternatives for a in _plain(alt, full)]
    return _plain(seq, full)


def _plain(seq: list[Item], full: bool) -> list[list[str]]:
    results: list[list[str]] = [[]]
    for item in seq:
        options = [[item]] if isinstance(item, str) else (_expand(item, full) if full else [[]])
        results = [r + o for r in results for o in options]
    return results


def expand(command: str) -> list[list[str]]:
    """Every concrete argv (after `lmstudio-tray`) a command or usage line stands for, placeholders kept."""
    if "..." in command or "…" in command:
        return []  # "lmstudio-tray ..." means any command
    out: list[list[str]] = []
    for words in _words(command):
        tree = _tree(words)
        for argv in _expand(tree, True) + _expand(tree, False):
            if argv not in out:
                out.append(argv)
    return out


def sample(word: str) -> str:
    if word == FORMATTED:
        return FORMATTED_SAMPLE
    if PLACEHOLDER.match(word):
        return SAMPLES.get(word, "sample")
    return word.replace(FORMATTED, FORMATTED_SAMPLE)


def check_commands(texts: Iterable[Text]) -> tuple[list[Named], list[Problem]]:
    """Every named command and everything wrong with one, as (source, command, argparse's error)."""
    named: list[Named] = []
    problems: list[Problem] = []
    for text in texts:
        found, split = commands_in(text)
        named += found
        problems += split
    seen: set[tuple[str, str]] = set()
    for n in named:
        if (n.source, n.command) in seen:
            continue
        seen.add((n.source, n.command))
        try:
            variants = expand(n.command)
        except ValueError as exc:  # unbalanced quotes
            problems.append(Problem(n.source, n.command, f"not a shell command line: {exc}"))
            continue
        for argv in variants:
            if argv[:1] == [FORMATTED]:
                continue  # `lmstudio-tray {words}` is put together at run time: the generated texts show it
            concrete = [sample(w) for w in argv]
            if n.generated and argv != concrete:
                problems.append(Problem(n.source, n.command, "a placeholder where the real value belongs"))
                break
            error = parse_error(concrete, mention_ok=not n.generated)
            if error is not None:
                problems.append(Problem(n.source, shlex.join([PROGRAM, *concrete]), error))
            problems += _config_key_problem(n.source, argv)
    return named, problems


def _config_key_problem(source: str, argv: list[str]) -> list[Problem]:
    """`config set/unset/explain KEY`: KEY must be a key (or, for explain, a section) of the schema."""
    if argv[:1] != ["config"] or len(argv) < 3 or argv[1] not in ("set", "unset", "explain"):
        return []
    key = argv[2]
    if PLACEHOLDER.match(key) or key_known(key):
        return []
    return [Problem(source, shlex.join([PROGRAM, *argv]), f"{key!r} is not a key of the config schema")]


# ---- config keys -------------------------------------------------------------------------------------

# config keys are snake_case; a capital segment is a placeholder (profiles.NAME), not `models.replaceChildren`
SEGMENT = r"(?:<[\w-]+>|[A-Z][A-Z0-9_]*|[a-z_*][a-z0-9_*]*)(?![\w-])"
# `analytics.sqlite3`, `endpoint.json`, `models.dev` are files and hosts
NOT_KEYS = frozenset({"json", "jsonc", "toml", "md", "py", "ts", "js", "png", "zip", "bak", "lock", "txt", "log",
                      "db", "sqlite", "sqlite3", "html", "yaml", "yml", "spec", "desktop", "iss", "sh", "tmp",
                      "dev", "ai", "com", "org", "io", "net"})
HEADER = re.compile(rf"\[\[?([a-z_]+(?:\.{SEGMENT})*)\]\]?(?!\()")
TABLE_WORD = re.compile(r"\]?`? (?:tables?|sections?)\b")
SECTION_KEY = re.compile(rf"\[([a-z_]+(?:\.{SEGMENT})*)\] ([a-z_]+) ?=")


def _unwrap(ann: Any) -> Any:
    if typing.get_origin(ann) in (Union, types.UnionType):
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return ann


def _is_model(ann: Any) -> bool:
    return isinstance(ann, type) and issubclass(ann, BaseModel)


def _placeholder(word: str) -> bool:
    return bool(PLACEHOLDER.match(word)) or word == "*"


def _known(parts: list[str], model: type[BaseModel]) -> bool:
    if not parts:
        return True
    field = model.model_fields.get(parts[0])
    if field is None:
        return False
    return _known_in(_unwrap(field.annotation), parts[1:], field, parts[0], model)


def _known_in(ann: Any, rest: list[str], field: FieldInfo, name: str, owner: type[BaseModel]) -> bool:
    if not rest:
        return True
    if _is_model(ann):
        return _known(rest, ann)
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is list and args and _is_model(args[0]):
        # [[instances]] tables: `instances.url` or, by name, `instances.local.url`
        return _known(rest, args[0]) or _known(rest[1:], args[0])
    if origin is dict and len(args) == 2:
        if _is_model(args[1]):
            return _known(rest[1:], args[1])  # profiles.NAME.monitor
        if owner is ProfileConfig:
            return _known([name, *rest], Config)  # a profile's [profiles.NAME.monitor] overrides [monitor]
        default = field.get_default(call_default_factory=True)
        if isinstance(default, dict) and default:  # validation.policy.<category>, notifications.categories.<kind>
            return len(rest) == 1 and (rest[0] in default or _placeholder(rest[0]))
    return False


def key_known(key: str) -> bool:
    """A dotted key or table of the config schema, or of a team profile's own [team] and [models] tables."""
    parts = [p.removesuffix("[]") for p in key.split(".")]
    if parts == ["server"]:
        return True  # the 0.0.x layout's table, named by the migration that reads it
    if parts[0] in TEAM_ONLY:
        return _known(parts[1:], TeamMeta if parts[0] == "team" else ModelPolicy)
    return _known(parts, Config)


@functools.cache
def _dotted() -> re.Pattern[str]:
    heads = sorted(n for n, f in Config.model_fields.items() if _is_model(_unwrap(f.annotation))
                   or typing.get_origin(_unwrap(f.annotation)) in (list, dict))
    heads += list(TEAM_ONLY)
    return re.compile(rf"(?<![\w./$-])((?:{'|'.join(heads)})(?:\.{SEGMENT})+)")


@functools.cache
def _code_name(head: str, attribute: str) -> bool:
    """`monitor.MAX_AD_HOC`, `team.source_for`, `analytics.reports`: a module of the package and a name in it."""
    core = "lmstudio_tray.core"
    folders = ("lmstudio", "control", "config", "hooks", "support")
    for package in ("lmstudio_tray", core, *(f"{core}.{p}" for p in folders)):
        try:
            module = importlib.import_module(f"{package}.{head}")
        except ImportError:
            continue
        if hasattr(module, attribute) or (
            hasattr(module, "__path__") and importlib.util.find_spec(f"{package}.{head}.{attribute}") is not None
        ):
            return True
    return False


def keys_in(text: Text) -> Iterator[tuple[str, str, str]]:
    """(where, key, how it was written) for each config key or table a text names."""
    if "document." in text.text:
        return  # the dashboard's JavaScript: `models.append(...)` is code, not a setting
    for m in _dotted().finditer(text.text):
        parts = m.group(1).split(".")
        if parts[-1] not in NOT_KEYS and not _code_name(parts[0], parts[1]):
            yield text.at(m.start()), m.group(1), m.group(1)
    for m in HEADER.finditer(text.text):
        key = m.group(1)
        head = key.split(".")[0]
        # an unknown name in brackets is a table only in a TOML block, dotted, or called a table
        # (`[redacted]` is a marker, an old layout's `[server]` is history)
        if (head in Config.model_fields or head in TEAM_ONLY or text.toml or "." in key
                or TABLE_WORD.match(text.text, m.end())):
            yield text.at(m.start()), key, m.group(0)
    for m in SECTION_KEY.finditer(text.text):
        yield text.at(m.start()), f"{m.group(1)}.{m.group(2)}", m.group(0)


def check_keys(texts: Iterable[Text]) -> tuple[list[tuple[str, str]], list[Problem]]:
    """Every (source, key) named and the ones the schema does not know."""
    named: list[tuple[str, str]] = []
    problems: list[Problem] = []
    for text in texts:
        for where, key, written in keys_in(text):
            if (where, key) in named:
                continue
            named.append((where, key))
            if not key_known(key):
                problems.append(Problem(where, written, f"{key!r} is not a key or table of the config schema"))
    return named, problems


# ---- static texts: docs, source strings, the plugin --------------------------------------------------


def markdown_texts(path: Path) -> Iterator[Text]:
    """Prose paragraphs (so a code span may wrap), code-block command lines and TOML blocks."""
    rel = path.relative_to(ROOT).as_posix()
    fence: str | None = None
    paragraph: list[str] = []
    start = 0
    lines = path.read_text(encoding="utf-8").splitlines()
    for n, line in enumerate([*lines, ""], 1):
        stripped = line.strip()
        if stripped.startswith("```"):
            if paragraph:
                yield Text(rel, "\n".join(paragraph), line=start)
                paragraph = []
            fence = None if fence is not None else (stripped[3:].strip() or "text")
            continue
        if fence is not None:
            yield from _code_line(rel, n, fence, stripped)
        elif stripped:
            if not paragraph:
                start = n
            paragraph.append(stripped)
        elif paragraph:
            yield Text(rel, "\n".join(paragraph), line=start)
            paragraph = []


def _code_line(source: str, n: int, fence: str, line: str) -> Iterator[Text]:
    if fence == "toml":
        yield Text(source, line, line=n, toml=True)
        return
    if fence == "console":
        if not line.startswith("$ "):
            return  # output
        line = line[2:]
    line = line.removeprefix("$ ")
    if line == PROGRAM or line.startswith(PROGRAM + " "):
        command, _, comment = line.partition(" #")
        yield Text(source, f"`{command.strip()}`", line=n)
        if comment:
            yield Text(source, comment, line=n)


def doc_files() -> list[Path]:
    return [ROOT / "README.md", ROOT / "SECURITY.md", ROOT / "installers" / "README.md",
            *sorted((ROOT / "docs").glob("*.md"))]


def _render(node: ast.JoinedStr) -> str:
    """An f-string with FORMATTED where a value goes; a value glued to text before it (`--all{where}`,
    `{key}{ctx}`) is taken to add its own words and renders as nothing."""
    out = ""
    for value in node.values:
        if isinstance(value, ast.Constant):
            out += str(value.value)
        else:
            out += FORMATTED if not out or out[-1].isspace() or out[-1] in "`'\"(=[" else ""
    return out


def python_texts() -> Iterator[Text]:
    """Every string literal in the package (docstrings aside), f-strings rendered with FORMATTED."""
    for path in sorted((ROOT / "lmstudio_tray").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip: set[int] = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
                first = node.body[0]
                if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                    skip.add(id(first.value))
            if isinstance(node, ast.JoinedStr):
                skip.update(id(inner) for inner in ast.walk(node) if inner is not node)
        rel = path.relative_to(ROOT).as_posix()
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                yield Text(f"{rel}:{node.lineno}", node.value)
            elif isinstance(node, ast.JoinedStr):
                yield Text(f"{rel}:{node.lineno}", _render(node))


def plugin_texts() -> Iterator[Text]:
    """The plugin: its comments, its string literals, and the code spans inside its template strings."""
    path = ROOT / "lmstudio_tray" / "opencode" / "lmstudio-tray.ts"
    rel = path.relative_to(ROOT).as_posix()
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith(("//", "*", "/*")):
            yield Text(f"{rel}:{n}", stripped.lstrip("/* "))
            continue
        for m in re.finditer(r'"((?:[^"\\]|\\.)*)"', line):
            yield Text(f"{rel}:{n}", m.group(1))
        for m in re.finditer(r"\\`(.*?)\\`", line):  # an escaped backtick inside a template string
            yield Text(f"{rel}:{n}", f"`{m.group(1)}`")


def static_texts() -> Iterator[Text]:
    for path in doc_files():
        yield from markdown_texts(path)
    yield from python_texts()
    yield from plugin_texts()
