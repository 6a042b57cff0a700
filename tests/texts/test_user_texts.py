"""Every command and config key named in what people read exists: each `lmstudio-tray ...` command goes
through the real argparse parser (parsed only, never run) and each key through the config schema.

The texts: generated ones produced for real (verdicts for every category, tool answers, the refusals of
actions, the tray's and the policy's notifications: tests/texts/situations.py) and static ones (README,
SECURITY.md, installers/README.md, docs/*.md, every string literal of the package, which covers the CLI's
messages, `doctor` fixes and tips, and the plugin's strings). How commands are found and how usage syntax
(`a|b`, `[--json]`, KEY) is expanded: tests/texts/named.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lmstudio_tray.core.hooks.verdict import CATEGORIES
from tests.emulator_fixtures import EmulatorFactory
from tests.texts.named import (
    Problem,
    Text,
    check_commands,
    check_keys,
    expand,
    key_known,
    parse_error,
    static_texts,
)
from tests.texts.situations import generated_texts


def report(problems: list[Problem]) -> str:
    """One line per wrong (command, error), with where it was found."""
    where: dict[tuple[str, str], list[str]] = {}
    for p in problems:
        where.setdefault((p.command, p.error), []).append(p.source)
    lines = [f"{len(where)} wrong command(s) or key(s) in {len(problems)} place(s):"]
    for (command, error), sources in where.items():
        more = f" (+{len(sources) - 3} more)" if len(sources) > 3 else ""
        lines.append(f"  `{command}`: {error}\n      in: {'; '.join(sources[:3])}{more}")
    return "\n".join(lines)


@pytest.fixture
def texts(emulator_factory: EmulatorFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Text]:
    generated, categories = generated_texts(emulator_factory, tmp_path, monkeypatch)
    assert categories == set(CATEGORIES), f"no situation produced {set(CATEGORIES) - categories}"
    return [*generated, *static_texts()]


def test_every_command_named_in_a_user_text_parses(texts: list[Text]) -> None:
    named, problems = check_commands(texts)
    sources = {n.source.split(":")[0] for n in named}
    # the collection reaches every kind of text (a broken extractor must not pass by finding nothing)
    assert any(s.startswith("POST /v1/validate") for s in sources)
    assert any(s.startswith("POST /v1/tools/") for s in sources)
    assert any(s.startswith("tray notification") for s in sources)
    assert {"README.md", "docs/endpoint.md", "lmstudio_tray/diagnostics/checks.py",
            "lmstudio_tray/opencode/lmstudio-tray.ts"} <= sources
    assert not problems, report(problems)


def test_every_config_key_named_in_a_user_text_exists(texts: list[Text]) -> None:
    named, problems = check_keys(texts)
    keys = {key for _, key in named}
    assert {"actions.server_control", "validation.policy", "endpoint.port"} <= keys
    assert not problems, report(problems)


def test_every_tool_named_in_a_user_text_exists(texts: list[Text]) -> None:
    """`lmstudio_*` names in docs, answers and messages that look like a tool (the first word of one: list, load,
    bench, stat...) are tools the plugin registers; other identifiers (`lmstudio_calls`, `lmstudio_home`) are not
    tools and are left alone."""
    plugin = (Path(__file__).resolve().parents[2] / "lmstudio_tray" / "opencode" / "lmstudio-tray.ts").read_text()
    tools = set(re.findall(r"^\s+(lmstudio_\w+): defineTool\(", plugin, re.MULTILINE))
    assert {"lmstudio_benchmark", "lmstudio_recommend", "lmstudio_compare", "lmstudio_stats"} <= tools
    first_words = {name.split("_")[1][:4] for name in tools}  # "list", "benc", "stat", "serv", ...
    named = {(m.group(0), t.source) for t in texts for m in re.finditer(r"\blmstudio_([a-z]+)[a-z_]*\b", t.text)
             if m.group(1)[:4] in first_words}
    assert {n for n, _ in named} & tools, "no text names a tool: the search finds nothing"
    unknown = sorted((n, src) for n, src in named if n not in tools)
    assert not unknown, unknown


# ---- the checker itself ---------------------------------------------------------------------------


def test_usage_syntax_expands_into_each_concrete_command() -> None:
    assert expand("lmstudio-tray config path|explain KEY|export [FILE]") == [
        ["config", "path"], ["config", "explain", "KEY"], ["config", "export", "FILE"], ["config", "export"],
    ]
    assert expand("lmstudio-tray stats [--since 7d|all] [--json]  # a comment") == [
        ["stats", "--since", "7d", "--json"], ["stats", "--since", "all", "--json"], ["stats"],
    ]
    assert expand("lmstudio-tray server stop && lmstudio-tray server start") == [
        ["server", "stop"], ["server", "start"]]
    assert expand("lmstudio-tray instances discover [--add [NAME]]") == [
        ["instances", "discover", "--add", "NAME"], ["instances", "discover"]]
    assert expand("lmstudio-tray ...") == []


def test_the_parser_check_rejects_what_the_command_line_rejects() -> None:
    assert parse_error(["load", "qwen/qwen3-4b-2507", "-c", "16384"]) is None
    assert "invalid choice: 'load'" in (parse_error(["models", "load", "qwen/qwen3-4b-2507"]) or "")
    assert "invalid choice: 'token'" in (parse_error(["config", "token", "set"]) or "")
    assert "unrecognized arguments" in (parse_error(["status", "--instance", "x"]) or "")
    assert parse_error(["token", "set"]) is not None  # a generated text must give the instance
    assert parse_error(["token", "set"], mention_ok=True) is None  # a doc may name the command alone
    assert parse_error(["emulator", "--load-seconds", "1"]) is None  # the emulator's own parser
    assert parse_error(["--demo"]) is None  # no command: the tray


def test_misplaced_backticks_placeholders_and_unknown_keys_are_problems() -> None:
    _, problems = check_commands([Text("t", "start it with `lmstudio-tray server start` --instance gpu or ...",
                                       generated=True)])
    assert [p.error.split(";")[0] for p in problems] == ["the command goes on after its closing backtick"]
    _, problems = check_commands([Text("t", "run `lmstudio-tray load <key>`", generated=True)])
    assert [p.error for p in problems] == ["a placeholder where the real value belongs"]
    _, problems = check_commands([Text("t", "Usage: `lmstudio-tray load KEY [-c N]`")])
    assert problems == []
    assert key_known("validation.policy.not_loaded") and key_known("profiles.work.monitor.poll_interval")
    assert key_known("instances.local.url") and key_known("team.busy_minutes")
    assert not key_known("validation.policy.not_allowed")  # always blocked: no policy key
    assert not key_known("opencode.plugin")
    _, problems = check_keys([Text("t", "set `monitor.poll_intervall` or [opencode.plugin]")])
    assert len(problems) == 2
