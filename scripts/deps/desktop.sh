#!/usr/bin/env bash
# scripts/deps/desktop.sh [PYTHON]
#
# Installs what the real-desktop tests (tests/desktop, run under scripts/with-desktop.sh) need on a
# Debian 12 (bookworm) machine: the Debian packages for a throwaway X desktop (Xvfb, trayer, dunst,
# gnome-keyring, xdotool, ImageMagick), a StatusNotifierItem watcher and host (status-notifier-watcher,
# gtk-sni-tray-standalone) for the tray's D-Bus backend, Chromium for the dashboard's browser test,
# tmux to drive OpenCode's TUI in the end-to-end tests,
# desktop-file-utils and systemd for checking the Linux installer's files, tinyproxy (only its binary, no
# service) for the proxy tests of tests/core/test_proxy.py, faketime (libfaketime) to run a team member with
# a clock minutes off in tests/hub/test_member_clock.py, plus the headers PyGObject and dbus-python
# compile against, then those two Python packages into PYTHON's environment (default: .venv/bin/python of
# the checkout).
#
# Idempotent: apt is skipped when every package is already installed, pip when both modules import.
# Needs root (or sudo) for apt. Exit status is non-zero when something could not be installed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
python="${1:-$root/.venv/bin/python}"

# Runtime of the test desktop, then what the pip builds of PyGObject/dbus-python need.
# libglib2.0-bin provides gdbus (with-desktop.sh waits on bus names with it).
packages=(
  xvfb x11-utils xdotool imagemagick trayer dunst libnotify-bin gnome-keyring libsecret-tools
  libglib2.0-bin dbus
  chromium desktop-file-utils systemd tinyproxy-bin faketime
  tmux
  haskell-status-notifier-item-utils haskell-gtk-sni-tray-utils
  gir1.2-gtk-3.0 gir1.2-ayatanaappindicator3-0.1
  libgirepository1.0-dev libcairo2-dev pkg-config libdbus-1-dev libglib2.0-dev
  gcc python3-dev
)

missing=()
for pkg in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]})); then
  if ! command -v apt-get >/dev/null; then
    echo "desktop.sh: apt-get not found; install these packages by hand: ${missing[*]}" >&2
    exit 1
  fi
  sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null; then sudo=(sudo); else
      echo "desktop.sh: need root to install: ${missing[*]}" >&2
      exit 1
    fi
  fi
  echo "desktop.sh: installing ${missing[*]}"
  "${sudo[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "desktop.sh: Debian packages already present"
fi

if [[ ! -x "$python" ]]; then
  echo "desktop.sh: $python not found; create the venv first (python3 -m venv .venv && .venv/bin/pip install -e '.[test]')" >&2
  exit 1
fi

# python3-dev above matches Debian's python3; a venv built from another interpreter (e.g. a
# /usr/local build) brings its own headers, so the compile still finds Python.h.
if "$python" -c 'import gi, dbus; gi.require_version("Gtk", "3.0"); from gi.repository import Gtk' 2>/dev/null; then
  echo "desktop.sh: PyGObject and dbus-python already importable"
else
  # PyGObject >= 3.51 needs girepository-2.0 (GLib 2.80), which bookworm does not have.
  "$python" -m pip install -q "PyGObject<3.51" "dbus-python>=1.3"
fi

"$python" - <<'PY'
import gi, dbus  # noqa: F401
gi.require_version("Gtk", "3.0")
print("desktop.sh: PyGObject", gi.__version__, "dbus-python", dbus.__version__)
PY
