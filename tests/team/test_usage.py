"""`team export` writes an anonymised summary; `team report` merges members' summaries with a chart."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from PIL import Image

from lmstudio_tray.analytics.store import Store, default_path
from lmstudio_tray.cli import main

QWEN = "qwen/qwen3-4b-2507"
GEMMA = "google/gemma-3-12b"
PROFILE = '[team]\nname = "ml"\n[[instances]]\nname = "gpu-box"\nurl = "http://10.0.0.7:1234"\n'


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        code = main(list(args))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def record(db: Path, verdicts: list[tuple[str, str]], turns: list[tuple[str, str, int, int, str | None]]) -> None:
    store = Store(db)
    now = time.time()
    store.write(
        [("INSERT INTO verdicts(ts, instance, model, model_key, category, ok, latency_ms, session_id) "
          "VALUES (?,?,?,?,?,?,?,?)", (now, inst, model, model, "ready", 1, 0.3, "secret-session-id"))
         for inst, model in verdicts]
        + [("INSERT INTO turns(ts, message_id, session_id, instance, model, agent, provider, input_tokens, "
            "output_tokens, error) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (now, f"m{i}", "secret-session-id", inst, model, "build", "lmstudio", tin, tout, err))
           for i, (inst, model, tin, tout, err) in enumerate(turns)]
    )
    store.close()


def member(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> Path:
    """Switch to another member's machine: its own data dir (analytics, member id) and config."""
    data = tmp_path / name / "data"
    monkeypatch.setenv("XDG_DATA_HOME", str(data))
    cfg = tmp_path / name / "config.toml"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / "team.toml").write_text(PROFILE)
    cfg.write_text(f'team_profile = "{tmp_path / "team.toml"}"\n'
                   f'[[instances]]\nname = "{name}-laptop"\nurl = "http://127.0.0.1:1234"\n')
    return cfg


def test_export_then_report_merges_members(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    shared = tmp_path / "shared"
    cfg = member(tmp_path, monkeypatch, "alice")
    record(default_path(), [("gpu-box", QWEN)] * 3 + [("alice-laptop", GEMMA)],
           [("gpu-box", QWEN, 100, 20, None), ("alice-laptop", GEMMA, 50, 5, "boom")])
    code, out, err = run(capsys, "--config", str(cfg), "team", "export", str(shared))
    assert code == 0, err
    assert "2 model(s), 4 request(s)" in out
    cfg = member(tmp_path, monkeypatch, "bob")
    record(default_path(), [("gpu-box", QWEN)] * 2, [("gpu-box", QWEN, 10, 2, None)])
    assert run(capsys, "--config", str(cfg), "team", "export", str(shared))[0] == 0
    assert run(capsys, "--config", str(cfg), "team", "export", str(shared))[0] == 0  # replaces, not adds

    files = sorted(shared.glob("usage-*.json"))
    assert len(files) == 2
    for f in files:
        text = f.read_text()
        # anonymised: no session ids, agents, or the names of members' own machines
        assert "secret-session-id" not in text and "laptop" not in text and "build" not in text
        assert "alice" not in text and "bob" not in text

    code, out, _ = run(capsys, "team", "report", str(shared), "--json")
    assert code == 0
    report = json.loads(out)
    assert report["members"] == 2
    models = {m["name"]: m for m in report["models"]}
    assert models[QWEN]["requests"] == 5 and models[QWEN]["turns"] == 2
    assert models[QWEN]["input_tokens"] == 110 and models[QWEN]["output_tokens"] == 22
    assert models[GEMMA] == {"name": GEMMA, "requests": 1, "turns": 1, "input_tokens": 50, "output_tokens": 5,
                             "errors": 1}
    instances = {i["name"]: i for i in report["instances"]}
    assert instances["gpu-box"]["requests"] == 5 and instances["private"]["requests"] == 1
    assert [m["name"] for m in report["models"]] == [QWEN, GEMMA]  # busiest first

    chart = Path(report["chart"])
    assert chart == shared / "team-usage.png"
    with Image.open(chart) as img:
        assert img.format == "PNG" and img.width == 900 and img.height > 150
        # the bars are drawn: the bar colour is present
        colours = {c for _, c in img.getcolors(maxcolors=100_000) or []}
        assert (70, 120, 200) in colours

    code, out, _ = run(capsys, "team", "report", str(shared))
    assert code == 0 and "2 member(s)" in out and QWEN in out and "Chart:" in out


def test_report_skips_bad_files_and_names_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "usage-x.json").write_text("{broken")
    (shared / "usage-y.json").write_text(json.dumps({"format": 1, "models": {QWEN: {"requests": -3}}}))
    (shared / "usage-z.json").write_text(json.dumps({"format": 1, "member": "z",
                                                     "models": {QWEN: {"requests": 2}}, "instances": {}}))
    code, out, err = run(capsys, "team", "report", str(shared), "--json")
    assert code == 0
    assert "usage-x.json" in err and "usage-y.json" in err and "skipped" in err
    assert json.loads(out)["members"] == 1


def test_export_without_analytics_and_report_of_an_empty_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "team", "export", str(tmp_path / "s"))
    assert code == 0 and "0 request(s)" in out and "no analytics recorded yet" in out
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out, _ = run(capsys, "team", "report", str(empty))
    assert code == 1 and "No usage summaries" in out
    code, _, err = run(capsys, "team", "report", str(tmp_path / "nope"))
    assert code == 2 and "is not a folder" in err


def test_team_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--config", str(tmp_path / "c.toml"), "team", "status")
    assert code == 0 and "No team profile" in out
    (tmp_path / "team.toml").write_text(PROFILE + '[models]\nallowed = ["a"]\n')
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'team_profile = "{tmp_path / "team.toml"}"\n')
    code, out, _ = run(capsys, "--config", str(cfg), "team", "status")
    assert code == 0 and "Team 'ml'" in out and "shared instances: gpu-box" in out and "allowed models: a" in out
