"""[[pools]] in config.toml: parsed, and mistakes named with the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from lmstudio_tray.core.config.loader import load_config
from lmstudio_tray.core.errors import ConfigError

INSTANCES = """
[[instances]]
name = "desk"
url = "http://127.0.0.1:1234"

[[instances]]
name = "gpu-box"
url = "http://10.0.0.7:1234"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(INSTANCES + text, encoding="utf-8")
    return path


def test_pools_are_read(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, '[[pools]]\nname = "team"\ninstances = ["desk", "gpu-box"]\n'))
    assert [(p.name, p.instances) for p in cfg.pools] == [("team", ["desk", "gpu-box"])]


def test_no_pools_by_default(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "")).pools == []


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('[[pools]]\nname = "team"\ninstances = ["desk", "laptop"]\n', ["'team'", "laptop", "desk, gpu-box"]),
        ('[[pools]]\nname = "team"\ninstances = []\n', ["pools[0].instances", "at least 1"]),
        ('[[pools]]\nname = "a b"\ninstances = ["desk"]\n', ["pools[0].name", "letters"]),
        ('[[pools]]\nname = "t"\ninstances = ["desk"]\n[[pools]]\nname = "t"\ninstances = ["desk"]\n',
         ["unique", "t"]),
        ('[[pools]]\nname = "t"\ninstance = ["desk"]\n', ["pools[0].instance", "unknown key"]),
    ],
)
def test_bad_pools_are_named(tmp_path: Path, text: str, words: list[str]) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    for word in words:
        assert word in str(err.value), (word, str(err.value))
    assert path.read_text(encoding="utf-8") == INSTANCES + text  # untouched
