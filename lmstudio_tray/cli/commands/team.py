"""`lmstudio-tray team status|export|report`: the team profile in effect, and team-wide usage.

`export DIR` writes this member's anonymised usage summary into a shared folder (a random member id, no
session ids, prompts, agents or exact times; instances the team does not share are lumped together as
"private"). `report DIR` merges every member's summary per model and per instance, with a PNG chart.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
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
    sp = tsub.add_parser("report", help="merge every member's summary in DIR (without DIR: from the team hub), "
                         "with a PNG chart")
    sp.add_argument("dir", type=Path, nargs="?", default=None,
                    help="the shared folder members export into; without it, the team hub's merged usage")
    sp.add_argument("--json", action="store_true", help="print the merged figures as JSON")
    sp.add_argument("--chart", type=Path, default=None,
                    help="where to write the chart (default DIR/team-usage.png; without DIR, only when given)")
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
    from lmstudio_tray.cli import team_hub

    if args.json:
        print_json({**profile.to_json(), "team_hub": team_hub.hub_status_json(profile)})
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
    for line in team_hub.hub_status_lines(profile):
        print(line)
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
    from lmstudio_tray.analytics.team_usage import usage_summary as summary

    return summary(profile.shared_instances if profile else (), team=profile.name if profile else None, days=days,
                   member=member_id(), db=db, now=now)


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
    if args.dir is None:
        return _report_from_hub(args)
    if not args.dir.is_dir():
        print(f"lmstudio-tray: {args.dir} is not a folder; give the shared folder members export into",
              file=sys.stderr)
        return EXIT_USAGE
    report, problems = merge_summaries(args.dir)
    for problem in problems:
        print(f"lmstudio-tray: {problem}", file=sys.stderr)
    chart = _chart(report, args.chart or args.dir / "team-usage.png")
    from lmstudio_tray.cli.team_hub import ReportSource

    source = {"kind": ReportSource.FILES, "dir": str(args.dir)}
    if args.json:
        print_json({**report, "chart": str(chart) if chart else None, "skipped": problems, "source": source})
        return EXIT_OK if report["members"] else EXIT_FAILURE
    if not report["members"]:
        print(f"No usage summaries in {args.dir}; members write theirs with `lmstudio-tray team export "
              f"{args.dir}`.")
        return EXIT_FAILURE
    print(f"Source: the usage summaries in {args.dir}")
    _print_report(report, chart)
    return EXIT_OK


def _chart(report: dict[str, Any], target: Path | None) -> Path | None:
    if target is None:
        return None
    try:
        draw_chart(report, target)
    except OSError as exc:
        print(f"lmstudio-tray: cannot write the chart {target} ({exc})", file=sys.stderr)
        return None
    return target


def _report_from_hub(args: argparse.Namespace) -> int:
    """`team report` without a folder: the team's merged usage from the hub the team profile names."""
    from lmstudio_tray.cli import team_hub

    teams = loader.TeamProfiles()
    profile = profile_of(read_config(args, teams), teams)
    if profile is None:
        print("lmstudio-tray: no team profile, so no team hub: give the folder members export into "
              "(`lmstudio-tray team report DIR`), or set team_profile in the config", file=sys.stderr)
        return EXIT_USAGE
    try:
        got = team_hub.team_usage_from_hub(profile)
    except team_hub.HubReportError as exc:
        print(f"lmstudio-tray: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    if got.problem:  # said once, on stderr: the figures follow
        print(f"lmstudio-tray: {got.problem}; showing {got.where()}", file=sys.stderr)
    report = {key: got.report.get(key) for key in ("members", "names", "models", "instances")}
    chart = _chart(report, args.chart)
    if args.json:
        print_json({**report, "chart": str(chart) if chart else None, "skipped": [], "source": got.source_json()})
        return EXIT_OK if report["members"] else EXIT_FAILURE
    print(got.source_text())
    if not report["members"]:
        print("No member has sent usage to the team hub yet: a running `lmstudio-tray serve` or tray with analytics "
              "on sends it.")
        return EXIT_FAILURE
    _print_report(report, chart)
    return EXIT_OK


def _print_report(report: dict[str, Any], chart: Path | None) -> None:
    names = report.get("names")
    print(f"{report['members']} member(s)" + (f": {', '.join(names)}" if names else ""))
    for title, key in (("model", "models"), ("instance", "instances")):
        print(f"\n{title:<40} {'requests':>9} {'turns':>7} {'in tok':>9} {'out tok':>9} {'errors':>7}")
        for it in report[key]:
            print(f"{it['name'][:40]:<40} {it['requests']:>9} {it['turns']:>7} {it['input_tokens']:>9} "
                  f"{it['output_tokens']:>9} {it['errors']:>7}")
    if chart:
        print(f"\nChart: {chart}")
