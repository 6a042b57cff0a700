"""`lmstudio-tray team status|export|report`: the team profile in effect, and team-wide usage.

`export DIR` writes this member's anonymised usage summary into a shared folder (a random member id, no
session ids, prompts, agents or exact times; instances the team does not share are lumped together as
"private"). `report DIR` merges every member's summary per model and per instance, with a PNG chart.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

from lmstudio_tray.cli._common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, print_json, read_config
from lmstudio_tray.cli.hub import add_hub_parser
from lmstudio_tray.core.config import loader, team
from lmstudio_tray.core.config.schema import Config
from lmstudio_tray.core.support import paths
from lmstudio_tray.core.support.files import atomic_write

FORMAT = 1
PRIVATE = "private"
FIELDS = ("requests", "turns", "input_tokens", "output_tokens", "errors")
Totals = dict[str, dict[str, int]]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("team", help="team profile, and team-wide usage summaries")
    tsub = p.add_subparsers(dest="team_command", metavar="COMMAND", required=True)
    sp = tsub.add_parser("status", help="the team profile in effect: source, locked keys, shared instances")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=run_status)
    sp = tsub.add_parser("export", help="write your anonymised usage summary into a shared folder")
    sp.add_argument("dir", type=Path)
    sp.add_argument("--days", type=float, default=30.0, help="how far back to count (default 30)")
    sp.set_defaults(func=run_export)
    sp = tsub.add_parser("report", help="merge every member's summary in DIR, with a PNG chart")
    sp.add_argument("dir", type=Path)
    sp.add_argument("--json", action="store_true", help="print the merged figures as JSON")
    sp.add_argument("--chart", type=Path, default=None, help="where to write the chart (default DIR/team-usage.png)")
    sp.set_defaults(func=run_report)
    add_hub_parser(sub)  # the hub's members: `hub member add|list|revoke`


def profile_of(config: Config, teams: loader.TeamProfiles | None = None) -> team.TeamProfile | None:
    """The team profile `config` names (as `teams` loaded it; loaded now without)."""
    return (teams if teams is not None else loader.TeamProfiles()).for_config(config)


# ---- status -----------------------------------------------------------------------------------------


def run_status(args: argparse.Namespace) -> int:
    teams = loader.TeamProfiles()
    config = read_config(args, teams)
    profile = profile_of(config, teams)
    if profile is None:
        source = team.team_source({team.KEY: config.team_profile} if config.team_profile else {})
        if source:
            print(f"lmstudio-tray: the team profile {source} is unusable and no good copy exists; "
                  "see the warning above", file=sys.stderr)
            return EXIT_FAILURE
        print("No team profile: set team_profile in the config (a path or an https:// URL), "
              f"or ${team.ENV}.")
        return EXIT_OK
    if args.json:
        print_json(profile.to_json())
        return EXIT_OK
    print(f"Team {profile.name!r} from {profile.source}"
          + (" (last good copy)" if profile.from_cache else ""))
    if profile.warning:
        print(f"  warning: {profile.warning}")
    print(f"  shared instances: {', '.join(profile.shared_instances) or 'none'}")
    print(f"  locked settings: {', '.join(profile.locked) or 'none'}")
    if profile.allowed:
        print(f"  allowed models: {', '.join(profile.allowed)}")
    for r in profile.recommended:
        print(f"  recommended: {r.key}" + (f" (context {r.context_length})" if r.context_length else ""))
    return EXIT_OK


# ---- export -----------------------------------------------------------------------------------------


def member_id() -> str:
    """A random id for this installation: lets a re-export replace the old file, and says nothing else."""
    path = paths.data_dir() / "team-member-id"
    try:
        value = path.read_text(encoding="utf-8").strip()
        if value:
            return value
    except OSError:
        pass
    value = uuid.uuid4().hex[:12]
    atomic_write(path, value, 0o600)
    return value


def usage_summary(config: Config, profile: team.TeamProfile | None, *, days: float,
                  db: Path | None = None, now: float | None = None) -> dict[str, Any]:
    """This member's usage from the analytics store, counted per model and per (shared) instance."""
    from lmstudio_tray.analytics.store import StoreError, reading

    moment = time.time() if now is None else now
    since = moment - days * 86400
    shared = set(profile.shared_instances) if profile else set()
    models: Totals = defaultdict(lambda: dict.fromkeys(FIELDS, 0))
    instances: Totals = defaultdict(lambda: dict.fromkeys(FIELDS, 0))
    note = None

    def bucket(instance: str | None) -> str:
        return instance if instance in shared else PRIVATE

    try:
        with reading(db) as conn:
            for row in conn.execute(
                "SELECT COALESCE(model_key, model) AS m, instance, COUNT(*) AS n FROM verdicts WHERE ts >= ? "
                "GROUP BY m, instance", (since,),
            ):
                if row["m"]:
                    models[row["m"]]["requests"] += row["n"]
                    instances[bucket(row["instance"])]["requests"] += row["n"]
            for row in conn.execute(
                "SELECT model, instance, COUNT(*) AS n, SUM(COALESCE(input_tokens, 0)) AS i, "
                "SUM(COALESCE(output_tokens, 0)) AS o, SUM(error IS NOT NULL) AS e FROM turns WHERE ts >= ? "
                "GROUP BY model, instance", (since,),
            ):
                if not row["model"]:
                    continue
                for target in (models[row["model"]], instances[bucket(row["instance"])]):
                    target["turns"] += row["n"]
                    target["input_tokens"] += row["i"] or 0
                    target["output_tokens"] += row["o"] or 0
                    target["errors"] += row["e"] or 0
    except (StoreError, sqlite3.Error) as exc:
        note = str(exc)
    return {
        "format": FORMAT,
        "member": member_id(),
        "team": profile.name if profile else None,
        "exported_on": time.strftime("%Y-%m-%d", time.gmtime(moment)),  # the day only
        "days": days,
        "models": dict(models),
        "instances": dict(instances),
        "note": note,
    }


def run_export(args: argparse.Namespace) -> int:
    teams = loader.TeamProfiles()
    config = read_config(args, teams)
    profile = profile_of(config, teams)
    if args.days <= 0:
        print("lmstudio-tray: --days must be more than 0", file=sys.stderr)
        return EXIT_USAGE
    summary = usage_summary(config, profile, days=args.days)
    target = args.dir / f"usage-{summary['member']}.json"
    try:
        atomic_write(target, json.dumps(summary, indent=1, sort_keys=True))
    except OSError as exc:
        print(f"lmstudio-tray: cannot write {target} ({exc.strerror}); is the shared folder mounted and "
              "writable?", file=sys.stderr)
        return EXIT_FAILURE
    total = sum(m["requests"] for m in summary["models"].values())
    print(f"Wrote {target}: {len(summary['models'])} model(s), {total} request(s) in the last {args.days:g} days"
          + (f" ({summary['note']})" if summary["note"] else "") + ".")
    return EXIT_OK


# ---- report -----------------------------------------------------------------------------------------


def _add(into: Totals, data: Any) -> None:
    if not isinstance(data, dict):
        raise ValueError("expected a table of names")
    for name, figures in data.items():
        if not isinstance(figures, dict):
            raise ValueError(f"{name}: expected figures")
        row = into.setdefault(str(name), dict.fromkeys(FIELDS, 0))
        for key in FIELDS:
            value = figures.get(key, 0)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name}.{key} = {value!r} is not a count")
            row[key] += value


def merge_summaries(folder: Path) -> tuple[dict[str, Any], list[str]]:
    """Every member's summary in `folder` merged; unreadable files are skipped and named."""
    models: Totals = {}
    instances: Totals = {}
    members: list[str] = []
    problems: list[str] = []
    for path in sorted(folder.glob("usage-*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or data.get("format") != FORMAT:
                raise ValueError(f"not a format-{FORMAT} usage summary")
            m: Totals = {}
            i: Totals = {}
            _add(m, data.get("models", {}))
            _add(i, data.get("instances", {}))
        except (OSError, ValueError) as exc:
            problems.append(f"{path.name}: {exc}; skipped")
            continue
        for name, row in m.items():
            _add(models, {name: row})
        for name, row in i.items():
            _add(instances, {name: row})
        members.append(str(data.get("member", path.stem)))

    def ranked(t: Totals) -> list[dict[str, Any]]:
        return [{"name": k, **v} for k, v in sorted(t.items(), key=lambda kv: (-kv[1]["requests"], kv[0]))]

    return {"members": len(members), "models": ranked(models), "instances": ranked(instances)}, problems


def draw_chart(report: dict[str, Any], target: Path) -> None:
    """Two bar panels (requests per model, per instance) as a PNG, readable without any viewer tricks."""
    from PIL import Image, ImageDraw

    sections = [("Requests per model", report["models"]), ("Requests per instance", report["instances"])]
    rows = sum(max(1, len(items)) for _, items in sections)
    width, bar_h, gap, left = 900, 22, 8, 330
    height = 40 + rows * (bar_h + gap) + len(sections) * 50
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    draw.text((12, 10), f"Team usage: {report['members']} member(s)", fill="black")
    y = 40
    for title, items in sections:
        draw.text((12, y), title, fill="black")
        y += 24
        top = max([it["requests"] for it in items] + [1])
        if not items:
            draw.text((20, y), "(nothing recorded)", fill="gray")
            y += bar_h + gap
        for it in items:
            draw.text((20, y + 5), str(it["name"])[:44], fill="black")
            length = int((width - left - 80) * it["requests"] / top)
            draw.rectangle((left, y, left + max(1, length), y + bar_h), fill=(70, 120, 200))
            draw.text((left + length + 6, y + 5), str(it["requests"]), fill="black")
            y += bar_h + gap
        y += 26
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    img.save(tmp, format="PNG")
    tmp.replace(target)


def run_report(args: argparse.Namespace) -> int:
    if not args.dir.is_dir():
        print(f"lmstudio-tray: {args.dir} is not a folder; give the shared folder members export into",
              file=sys.stderr)
        return EXIT_USAGE
    report, problems = merge_summaries(args.dir)
    for problem in problems:
        print(f"lmstudio-tray: {problem}", file=sys.stderr)
    chart = args.chart or args.dir / "team-usage.png"
    try:
        draw_chart(report, chart)
    except OSError as exc:
        print(f"lmstudio-tray: cannot write the chart {chart} ({exc})", file=sys.stderr)
        chart = None
    if args.json:
        print_json({**report, "chart": str(chart) if chart else None, "skipped": problems})
        return EXIT_OK if report["members"] else EXIT_FAILURE
    if not report["members"]:
        print(f"No usage summaries in {args.dir}; members write theirs with `lmstudio-tray team export "
              f"{args.dir}`.")
        return EXIT_FAILURE
    print(f"{report['members']} member(s)")
    for title, key in (("model", "models"), ("instance", "instances")):
        print(f"\n{title:<40} {'requests':>9} {'turns':>7} {'in tok':>9} {'out tok':>9} {'errors':>7}")
        for it in report[key]:
            print(f"{it['name'][:40]:<40} {it['requests']:>9} {it['turns']:>7} {it['input_tokens']:>9} "
                  f"{it['output_tokens']:>9} {it['errors']:>7}")
    if chart:
        print(f"\nChart: {chart}")
    return EXIT_OK
