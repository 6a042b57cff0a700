#!/usr/bin/env bash
# scripts/run.sh [lmstudio-tray ARGS...]
#
# Installs lmstudio-tray into its own virtual environment (.venv of this checkout) and starts it.
# With no arguments it starts the tray; `scripts/run.sh --demo` starts it against the built-in
# LM Studio emulator, for trying it without LM Studio. Any other arguments go to `lmstudio-tray`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
venv="${VENV:-.venv}"
[[ -x "$venv/bin/python" ]] || "${PYTHON:-python3}" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
# a regular install (not editable): what a user runs, and setuptools prints nothing for it
"$venv/bin/python" -m pip install --quiet .
if [[ $# -eq 1 && $1 == --demo ]]; then
  exec "$venv/bin/lmstudio-tray" run --demo
fi
exec "$venv/bin/lmstudio-tray" "$@"
