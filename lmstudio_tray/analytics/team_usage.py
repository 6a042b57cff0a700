"""This member's anonymised usage summary: requests, turns, tokens and errors per model and per instance, the
instances the team does not share counted together as "private". No session ids, prompts, agents or times: the
day of the summary only. `lmstudio-tray team export` writes it to a file; the team hub gets it from `TeamSync`
through `StoreTeamUsage` (the core's `TeamUsage` port)."""

from __future__ import annotations

import sqlite3
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

FORMAT = 1
PRIVATE = "private"
FIELDS = ("requests", "turns", "input_tokens", "output_tokens", "errors")
Totals = dict[str, dict[str, int]]


def usage_summary(shared_instances: Sequence[str], *, team: str | None, days: float, member: str | None,
                  db: Path | None = None, now: float | None = None) -> dict[str, Any]:
    """The usage of the last `days` from the analytics store (`db`, default the usual file), counted per model and
    per (shared) instance. Blocking: reads the store."""
    from lmstudio_tray.analytics.store import StoreError, reading

    moment = time.time() if now is None else now
    since = moment - days * 86400
    shared = set(shared_instances)
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
        "member": member,
        "team": team,
        "exported_on": time.strftime("%Y-%m-%d", time.gmtime(moment)),  # the day only
        "days": days,
        "models": dict(models),
        "instances": dict(instances),
        "note": note,
    }


class StoreTeamUsage:
    """The core's `TeamUsage`: the summary read from the analytics store (whether or not analytics records now)."""

    def __init__(self, db: Path | None = None) -> None:
        """`db`: the store's file (default: the usual one)."""
        self.db = db

    def summary(self, shared_instances: Sequence[str], team: str | None, days: float) -> dict[str, Any]:
        """This member's summary for the hub (no member id: the hub knows the member by its token). Blocking."""
        return usage_summary(shared_instances, team=team, days=days, member=None, db=self.db)
