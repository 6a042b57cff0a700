"""The plugin type-checks with `tsc --strict` against the pinned @opencode-ai/plugin, and stays import-free."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.opencode.conftest import OPENCODE_VERSION, PLUGIN_FILE

pytestmark = pytest.mark.opencode


def test_plugin_typechecks_strict(node_modules: Path, tmp_path: Path) -> None:
    pkg = json.loads((node_modules / "@opencode-ai" / "plugin" / "package.json").read_text())
    assert pkg["version"] == OPENCODE_VERSION
    (tmp_path / "node_modules").symlink_to(node_modules, target_is_directory=True)
    (tmp_path / "lmstudio-tray.ts").write_text(PLUGIN_FILE.read_text())
    (tmp_path / "tsconfig.json").write_text(json.dumps({
        "compilerOptions": {
            "strict": True, "noEmit": True, "target": "ES2022", "module": "ESNext",
            "moduleResolution": "bundler", "lib": ["ES2022", "DOM"], "types": [],
            "skipLibCheck": True, "noUnusedLocals": True, "noImplicitReturns": True,
        },
        "files": ["lmstudio-tray.ts"],
    }))
    proc = subprocess.run(
        [str(node_modules / ".bin" / "tsc"), "--strict", "--noEmit", "-p", "tsconfig.json"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_plugin_has_no_runtime_imports() -> None:
    # OpenCode would npm-install anything imported (a ~70 s stall offline); only `import type` is erased.
    source = PLUGIN_FILE.read_text()
    imports = re.findall(r"^\s*import\s+(?!type\b).*$", source, re.MULTILINE)
    assert imports == []
    assert "require(" not in source


def test_plugin_exports_only_the_plugin_function() -> None:
    # OpenCode initialises every exported function as a plugin.
    source = PLUGIN_FILE.read_text()
    exports = re.findall(r"^export\s+(?:const|function|default|async)\s*(\w*)", source, re.MULTILINE)
    assert exports == ["LMStudioTrayPlugin", "LMStudioTrayPlugin"], exports


def test_plugin_tool_names_use_underscores() -> None:
    names = set(re.findall(r"^\s+(lmstudio_\w+):", PLUGIN_FILE.read_text(), re.MULTILINE))
    assert names == {
        "lmstudio_list_models", "lmstudio_load_model", "lmstudio_unload_model", "lmstudio_switch_model",
        "lmstudio_server_start", "lmstudio_server_stop", "lmstudio_server_status", "lmstudio_search_models",
        "lmstudio_download_model", "lmstudio_benchmark", "lmstudio_recommend", "lmstudio_compare", "lmstudio_stats",
    }
