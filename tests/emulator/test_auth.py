from __future__ import annotations

from tests.emulator.helpers import client_for, http
from tests.emulator_fixtures import EmulatorFactory

TOKEN = "sk-lm-Abcd1234:ABCDEFGHIJabcdefghij"
MISSING = (
    "An LM Studio API token is required to make requests to this server, but none was provided using the "
    "Authorization header using the 'Bearer' scheme (i.e., 'Authorization: Bearer $LM_API_TOKEN'). "
    "Learn more at: https://lmstudio.ai/docs/developer/core/authentication."
)


def test_missing_token_gets_documented_401(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(auth_token=TOKEN)
    with client_for(emu.api_url) as c:
        for path in ("/v1/models", "/api/v0/models", "/api/v1/models", "/foo"):
            r = c.get(path)
            assert r.status_code == 401, path
            assert r.json() == {"error": {"type": "invalid_request", "code": "invalid_api_key", "message": MISSING}}
        r = c.post("/v1/chat/completions", json={})
        assert r.status_code == 401


def test_greeting_is_exempt(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(auth_token=TOKEN)
    assert http.get(f"{emu.api_url}/lmstudio-greeting").json() == {"lmstudio": True}


def test_valid_and_invalid_tokens(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(auth_token=TOKEN)
    assert http.get(f"{emu.api_url}/api/v1/models", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    bad = http.get(f"{emu.api_url}/api/v1/models", headers={"Authorization": "Bearer sk-lm-wrong000:x"})
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "invalid_api_key"


def test_auth_off_accepts_any_token(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory()
    r = http.get(f"{emu.api_url}/api/v1/models", headers={"Authorization": "Bearer whatever"})
    assert r.status_code == 200


def test_auth_can_be_toggled_live(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory()
    emu.update(auth_token=TOKEN)
    assert http.get(f"{emu.api_url}/v1/models").status_code == 401
    emu.update(auth_token=None)
    assert http.get(f"{emu.api_url}/v1/models").status_code == 200


def test_versions_before_0_4_have_no_auth(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(version="0.3.31", auth_token=TOKEN)
    assert http.get(f"{emu.api_url}/v1/models").status_code == 200
