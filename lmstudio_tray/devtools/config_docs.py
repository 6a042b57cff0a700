"""Writes docs/configuration.md from the config schema (a developer tool; the running app never imports it).

    python -m lmstudio_tray.devtools.config_docs            # rewrite docs/configuration.md
    python -m lmstudio_tray.devtools.config_docs --check    # exit 1 when the document is out of date
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lmstudio_tray.core.config.presets import PRESETS
from lmstudio_tray.core.config.reference import KeyDoc, iter_keys, render_value, section_of
from lmstudio_tray.core.config.schema import Config
from lmstudio_tray.core.support.files import atomic_write

DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
REGENERATE = "python -m lmstudio_tray.devtools.config_docs"


# ---- the document ----------------------------------------------------------------------------------

INTRO = """\
# Configuration reference

<!-- Generated from the schema in lmstudio_tray/core/config/schema.py by `{regen}`.
     Do not edit by hand: tests/core/test_config_docs.py fails when this file is out of date. -->

lmstudio-tray reads one TOML file: `lmstudio-tray config path` prints where it is (`--config PATH` or
`$LMSTUDIO_TRAY_CONFIG` choose another). A missing file means every default below. Unknown keys are
errors, so a typo is reported instead of silently doing nothing. `lmstudio-tray config explain KEY`
prints one entry of this page.

## Changing settings

- By hand: edit the file; a running tray or `lmstudio-tray serve` notices the change within a second
  and applies it without a restart (a file with problems is reported in the log and the running
  settings stay).
- From the tray (notifications, notification types, validation, profile) and with
  `lmstudio-tray config set KEY VALUE`, `profile use`, `config preset` and `config import`: these edit
  the file in place, keeping your comments and layout. Each change is validated first (a bad one changes
  nothing and names the key), the previous file is kept as `config.toml.bak`, and the write is atomic
  (a crash leaves the old or the new file, never a mix).
- `lmstudio-tray config export [FILE]` writes the settings as TOML or JSON (by the file's extension;
  stdout without a file). API tokens are never part of it: they live in the keyring (`lmstudio-tray
  token set NAME`), and a password written into an instance URL is removed.
  `lmstudio-tray config import FILE [--merge]` validates the file first; without `--merge` it replaces
  the settings, with `--merge` its keys are merged into yours.

## Profiles

A profile is a named set of overrides in the same file, for example a `work` profile that watches a GPU
box with strict validation and a `laptop` profile with quiet notifications:

```toml
active_profile = "work"

[profiles.work]
description = "GPU box at the office"

[[profiles.work.instances]]
name = "gpu"
url = "http://10.0.0.5:1234"

[profiles.work.validation.policy]
jit = "block"

[profiles.laptop.notifications]
quiet = true
```

`instances` and `active_instance` in a profile replace the top-level ones; the tables `monitor`,
`validation`, `notifications` and `actions` are merged key by key over the top-level tables. Every
profile is validated as the config it produces, so switching to it cannot fail later.
`lmstudio-tray profile list|use NAME|off|show [NAME]` and the tray's Profile menu switch profiles; the
active profile is shown in `status`, `/v1/status` and the tray. A setting changed from the tray is
written into the active profile when that profile sets it (so the change takes effect), otherwise into
the top-level settings shared by all profiles.

## Presets

Shipped bundles of settings. `lmstudio-tray config preset NAME` writes them into your settings;
`lmstudio-tray config preset NAME --profile NEW` starts (or updates) a profile from one.

{presets}

## Older layouts

Files written by earlier releases load as they are and are migrated in memory; the file is rewritten
in the current layout only when a setting is changed through the app (the original is kept as
`config.toml.bak`).

- Layout 1, written by 0.0.x (no `version` key): `[server] url` became `[[instances]]`,
  `server.poll_seconds` became `monitor.poll_interval`, `notify` became `notifications.enabled`.
- Layout 2, 0.1 and later: current. `[profiles]`, `[actions]` and other new tables are additions.

## Settings
"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ") or " "


def render_markdown() -> str:
    presets = "\n".join(
        f"- **{p.name}** — {p.summary}. {p.details}\n  Sets: "
        + ", ".join(f"`{k} = {render_value(v)}`" for k, v in p.changes().items())
        for p in PRESETS.values()
    )
    out = [INTRO.format(regen=REGENERATE, presets=presets)]
    sections: dict[str, list[KeyDoc]] = {}
    for doc in iter_keys():
        sections.setdefault(doc.section, []).append(doc)
    for section, docs in sections.items():
        if not section:
            title = "Top level"
        elif section.endswith("[]"):
            title = f"`[[{section[:-2]}]]`"
        elif any(d.key.startswith(f"{section}.<name>.") for d in docs):
            title = f"`[{section}.<name>]`"
        else:
            title = f"`[{section}]`"
        model = section_of(Config, section) if section else None
        intro = " ".join((model.__doc__ or "").split()) if model is not None and model.__doc__ else ""
        if intro.startswith(("Usage docs", "A base class")):
            intro = ""
        out.append(f"### {title}\n")
        if intro:
            out.append(f"{intro}\n")
        out.append("| Key | Type | Default | Allowed | Description |")
        out.append("|---|---|---|---|---|")
        for d in docs:
            out.append(f"| `{d.key}` | {_cell(d.type)} | `{_cell(d.default)}` | {_cell(d.allowed)} | "
                       f"{_cell(d.description)} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Regenerate docs/configuration.md from the config schema.")
    parser.add_argument("--check", action="store_true", help="exit 1 if the document is out of date")
    parser.add_argument("--output", type=Path, default=DOC_PATH)
    args = parser.parse_args(argv)
    text = render_markdown()
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is out of date; run: {REGENERATE}", file=sys.stderr)
            return 1
        return 0
    atomic_write(args.output, text)
    print(f"wrote {args.output} ({text.count(chr(10))} lines)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
