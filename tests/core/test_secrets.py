"""Which keyring backend the token store uses (core/secrets.py), without a desktop.

The choice runs in a fresh interpreter where it matters: this test process already ran keyring's full
discovery (tests/conftest.py), which would hide what the store imports and picks on its own.
The Secret Service cases need a D-Bus session: tests/desktop/test_keyring_desktop.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lmstudio_tray.core.support.secrets import KeyringStore, backend_name, choose_keyring, open_store

PROBE = """
import json, sys
from lmstudio_tray.core.support.secrets import open_store
store = open_store()
store.set("probe-inst", "sk-probe-token")
print(json.dumps({"backend": store.backend, "token": store.get("probe-inst"),
                  "modules": sorted(m for m in sys.modules if m.startswith("keyring.backends."))}))
"""
DISCOVERY = ("import keyring; from lmstudio_tray.core.support.secrets import backend_name; "
             "print(backend_name(keyring.get_keyring()))")


def run_python(code: str, **env: str | None) -> str:
    full = {k: v for k, v in os.environ.items() if k != "PYTHON_KEYRING_BACKEND"}
    for key, value in env.items():
        if value is None:
            full.pop(key, None)
        else:
            full[key] = value
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=full)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_a_backend_set_in_the_process_wins(memory_keyring: object) -> None:
    assert choose_keyring() is memory_keyring
    store = open_store()
    store.set("local", "sk-memory")
    assert store.get("local") == "sk-memory"
    assert memory_keyring.store == {("lmstudio-tray", "local"): "sk-memory"}  # type: ignore[attr-defined]
    assert store.backend == "keyring (MemoryKeyring)"


def test_python_keyring_backend_wins(tmp_path: Path) -> None:
    out = json.loads(run_python(PROBE, PYTHON_KEYRING_BACKEND="keyrings.alt.file.PlaintextKeyring"))
    assert out["backend"] == "keyring (PlaintextKeyring)"
    assert out["token"] == "sk-probe-token"
    # keyrings.alt keeps it in a file under the (isolated) data dir: the env var was really obeyed
    stored = list(Path(os.environ["XDG_DATA_HOME"]).rglob("keyring_pass.cfg"))
    assert stored and "lmstudio_2Dtray" in stored[0].read_text()


def test_without_a_secret_service_the_choice_is_keyrings_own(tmp_path: Path) -> None:
    no_bus = {"DBUS_SESSION_BUS_ADDRESS": f"unix:path={tmp_path}/no-bus", "XDG_CURRENT_DESKTOP": None}
    ours = json.loads(run_python(PROBE, **no_bus))
    theirs = run_python(DISCOVERY, **no_bus)
    assert ours["token"] == "sk-probe-token"  # the keyring, or the 0600 file when no keyring works
    if ours["backend"].startswith("keyring ("):
        assert ours["backend"] == f"keyring ({theirs})"
    else:
        assert ours["backend"].startswith("file ") and (Path(os.environ["XDG_DATA_HOME"]) / "lmstudio-tray").exists()


def test_a_kde_session_keeps_keyrings_ranking(tmp_path: Path) -> None:
    # On KDE, keyring ranks KWallet above the Secret Service: the store must not skip that ranking.
    env = {"XDG_CURRENT_DESKTOP": "KDE", "DBUS_SESSION_BUS_ADDRESS": f"unix:path={tmp_path}/no-bus"}
    code = ("import json, sys; from lmstudio_tray.core.support.secrets import choose_keyring, backend_name; "
            "b = choose_keyring(); print(json.dumps([backend_name(b), 'keyring.backends.kwallet' in sys.modules]))")
    name, kwallet_considered = json.loads(run_python(code, **env))
    assert kwallet_considered
    assert name == run_python(DISCOVERY, **env)


def test_keyring_store_names_the_backend_class(memory_keyring: object) -> None:
    from keyring.backends import fail

    assert backend_name(fail.Keyring()) == "fail"  # type: ignore[no-untyped-call]
    assert KeyringStore(memory_keyring).backend == "keyring (MemoryKeyring)"  # type: ignore[arg-type]


@pytest.mark.parametrize("platform", ["darwin", "win32"])
def test_other_platforms_use_keyrings_discovery(memory_keyring: object, platform: str) -> None:
    assert choose_keyring(env={}, platform=platform) is memory_keyring


def test_the_plain_lookup_says_why_it_cannot_answer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lmstudio_tray.core.support.secrets import NeedsKeyring, plain_lookup

    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={tmp_path}/no-bus")
    with pytest.raises(NeedsKeyring) as err:
        plain_lookup({"service": "lmstudio-tray", "username": "local"})
    assert "no-bus" in str(err.value) or "No such file" in str(err.value)


def test_a_keyring_config_file_keeps_keyrings_discovery(tmp_path: Path) -> None:
    """A keyringrc.cfg may name a backend: then keyring, not the shortcut, decides (asked without importing it)."""
    code = ("import json, sys; from lmstudio_tray.core.support.secrets import secret_service_first; "
            "print(json.dumps([secret_service_first(platform='linux'), 'keyring' in sys.modules]))")
    env = {"XDG_CONFIG_HOME": str(tmp_path), "XDG_CURRENT_DESKTOP": "GNOME"}
    assert json.loads(run_python(code, **env)) == [True, False]
    config = tmp_path / "python_keyring" / "keyringrc.cfg"
    config.parent.mkdir()
    config.write_text("[backend]\ndefault-keyring=keyring.backends.fail.Keyring\n")
    assert json.loads(run_python(code, **env)) == [False, False]
