"""The token store on the test desktop (gnome-keyring as the Secret Service): picked directly, found by
`secret-tool`, and the same backend keyring's own discovery ranks first; PYTHON_KEYRING_BACKEND still wins.

    scripts/with-desktop.sh .venv/bin/pytest -m desktop tests/desktop/test_keyring_desktop.py
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid

import pytest

from tests.core.test_secrets import PROBE, run_python

pytestmark = [pytest.mark.desktop, pytest.mark.real_keyring]


def secret_tool_lookup(name: str) -> str:
    done = subprocess.run(["secret-tool", "lookup", "service", "lmstudio-tray", "username", name],
                          capture_output=True, text=True, timeout=30)
    return done.stdout


def secret_tool_store(name: str, token: str) -> None:
    """Store a token the way a user (or keyring) would, with the attributes keyring writes."""
    subprocess.run(["secret-tool", "store", "--label", "probe", "service", "lmstudio-tray", "username", name,
                    "application", "Python keyring library"], input=token, text=True, timeout=30, check=True)


def clear(name: str) -> None:
    subprocess.run(["secret-tool", "clear", "service", "lmstudio-tray", "username", name], timeout=30, check=False)


def test_the_secret_service_is_chosen_without_full_discovery() -> None:
    name = f"probe-{uuid.uuid4().hex[:8]}"
    code = PROBE.replace('"probe-inst"', repr(name))
    try:
        out = json.loads(run_python(code))
        assert out["backend"] == "keyring (SecretService)"
        assert out["token"] == "sk-probe-token"
        assert secret_tool_lookup(name) == "sk-probe-token"  # really in gnome-keyring, where users look
        # the point of choosing directly: no other backend was imported to be ranked
        assert set(out["modules"]) <= {"keyring.backends.SecretService", "keyring.backends.fail"}, out["modules"]
    finally:
        clear(name)
    # ... and it is the backend keyring's own discovery would use first here
    first = run_python("import keyring; b = keyring.get_keyring(); "
                       "print(type(getattr(b, 'backends', [b])[0]).__module__)")
    assert first == "keyring.backends.SecretService"


def test_python_keyring_backend_beats_the_secret_service() -> None:
    name = f"probe-{uuid.uuid4().hex[:8]}"
    code = PROBE.replace('"probe-inst"', repr(name))
    try:
        out = json.loads(run_python(code, PYTHON_KEYRING_BACKEND="keyrings.alt.file.PlaintextKeyring"))
        assert out["backend"] == "keyring (PlaintextKeyring)"
        assert out["token"] == "sk-probe-token"
        assert secret_tool_lookup(name) == ""
    finally:
        clear(name)


def test_the_tray_reads_its_token_from_the_secret_service(tmp_path: os.PathLike[str]) -> None:
    """What the running tray sees: the Core's store finds a token stored with secret-tool."""
    name = f"probe-{uuid.uuid4().hex[:8]}"
    secret_tool_store(name, "sk-from-secret-tool")
    try:
        code = ("from lmstudio_tray.core.support.secrets import open_store; s = open_store(); "
                f"print(s.backend + '|' + str(s.get({name!r})))")
        assert run_python(code) == "keyring (SecretService)|sk-from-secret-tool"
    finally:
        clear(name)


def test_reading_a_token_loads_no_encryption_library() -> None:
    """The tray reads its tokens over a plain session: keyring, secretstorage and cryptography stay out."""
    name = f"probe-{uuid.uuid4().hex[:8]}"
    secret_tool_store(name, "sk-plain-read")
    try:
        code = ("import json, sys; from lmstudio_tray.core.support.secrets import open_store; s = open_store(); "
                f"v = s.get({name!r}); missing = s.get('no-such-instance'); "
                "print(json.dumps([s.backend, v, missing, "
                "sorted(m for m in ('keyring', 'secretstorage', 'cryptography') if m in sys.modules)]))")
        backend, value, missing, heavy = json.loads(run_python(code))
        assert (backend, value, missing) == ("keyring (SecretService)", "sk-plain-read", None)
        assert heavy == []
    finally:
        clear(name)


def test_set_and_delete_go_through_keyring_and_reads_see_them() -> None:
    from lmstudio_tray.core.support.secrets import SecretServiceStore

    name = f"probe-{uuid.uuid4().hex[:8]}"
    store = SecretServiceStore()
    try:
        store.set(name, "sk-written")
        assert secret_tool_lookup(name) == "sk-written"
        assert store.get(name) == "sk-written"
        store.set(name, "sk-replaced")
        assert store.get(name) == "sk-replaced"
        store.delete(name)
        assert store.get(name) is None and secret_tool_lookup(name) == ""
    finally:
        clear(name)


def test_what_the_plain_lookup_cannot_answer_is_asked_of_keyring(monkeypatch: pytest.MonkeyPatch) -> None:
    import lmstudio_tray.core.support.secrets as secrets_mod

    name = f"probe-{uuid.uuid4().hex[:8]}"
    subprocess.run(["secret-tool", "store", "--label", "probe", "service", "lmstudio-tray", "username", name],
                   input="sk-via-keyring", text=True, timeout=30, check=True)

    def locked(attributes: dict[str, str]) -> str | None:
        raise secrets_mod.NeedsKeyring("the item is locked")

    monkeypatch.setattr(secrets_mod, "plain_lookup", locked)
    try:
        assert secrets_mod.SecretServiceStore().get(name) == "sk-via-keyring"
    finally:
        clear(name)
