#!/usr/bin/env bash
# scripts/test.sh [PYTEST ARGS...]
#
# The whole test suite from a fresh Debian 12 machine: installs the Python dependencies into .venv,
# the Debian packages and PyGObject for the real-desktop tests, and the real `opencode` binary for the
# plugin tests, then runs ruff, mypy and every test (desktop ones inside a throwaway X/D-Bus desktop)
# with line coverage of lmstudio_tray. Nothing is skipped: missing pieces fail the run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

venv="${VENV:-.venv}"
python="${PYTHON:-python3}"

step() { printf '\n== %s\n' "$*"; }

step "Python environment ($venv)"
[[ -x "$venv/bin/python" ]] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet -e '.[test]'

step "desktop test dependencies (Debian packages, PyGObject)"
bash scripts/deps/desktop.sh "$venv/bin/python"

step "OpenCode test dependencies (opencode-ai, @opencode-ai/plugin, typescript, jsonc-parser)"
bash scripts/deps/opencode.sh

step "ruff"
"$venv/bin/ruff" check lmstudio_tray tests bench

step "mypy"
"$venv/bin/mypy"

step "import contracts (pyproject.toml [tool.importlinter])"
"$venv/bin/lint-imports"

step "pytest (inside a throwaway desktop)"
export LMSTUDIO_TRAY_REQUIRE_DESKTOP=1 LMSTUDIO_TRAY_REQUIRE_OPENCODE=1
rm -f .coverage .coverage.*
bash scripts/with-desktop.sh "$venv/bin/python" -m pytest -p no:cacheprovider \
  --cov=lmstudio_tray --cov-report=term --cov-fail-under=85 "$@"
