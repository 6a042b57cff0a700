#!/usr/bin/env bash
# Install lmstudio-tray for the current user (no root): the app, a launcher entry and its icon.
#
#   installers/linux/install.sh [--autostart | --no-autostart] [--method auto|uv|pipx|venv]
#                               [--source SPEC] [--python PYTHON] [--yes]
#
# --method   auto (default) uses `uv tool` when uv is installed, else pipx, else a virtual environment of
#            its own under $XDG_DATA_HOME/lmstudio-tray/venv with a link in ~/.local/bin.
# --source   what to install: a checkout, a wheel or a PyPI requirement (default: this checkout when the
#            script runs from one, else "lmstudio-tray" from PyPI).
# --autostart / --no-autostart   start the tray at login or not. Without either, asks when run in a
#            terminal, and answers no otherwise. The tray's "Start at login" item changes it later.
#
# Everything it creates is listed in $XDG_DATA_HOME/lmstudio-tray/install-manifest.txt; uninstall.sh
# removes exactly that (and the autostart entry, if any), and keeps your settings unless --purge.
set -euo pipefail

APP=lmstudio-tray
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
data_home="${XDG_DATA_HOME:-$HOME/.local/share}"
config_home="${XDG_CONFIG_HOME:-$HOME/.config}"
bin_home="${XDG_BIN_HOME:-$HOME/.local/bin}"
app_data="$data_home/$APP"
manifest="$app_data/install-manifest.txt"

method=auto source="" python="${PYTHON:-python3}" autostart=ask assume_yes=0

die() { echo "install.sh: $*" >&2; exit 1; }
usage() { sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --autostart) autostart=yes ;;
    --no-autostart) autostart=no ;;
    --method) method="${2:?--method needs a value}"; shift ;;
    --method=*) method="${1#*=}" ;;
    --source) source="${2:?--source needs a value}"; shift ;;
    --source=*) source="${1#*=}" ;;
    --python) python="${2:?--python needs a value}"; shift ;;
    --python=*) python="${1#*=}" ;;
    -y|--yes) assume_yes=1 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
  esac
  shift
done
case "$method" in auto|uv|pipx|venv) ;; *) die "--method must be auto, uv, pipx or venv (got '$method')" ;; esac

if [[ -z "$source" ]]; then
  if [[ -f "$root/pyproject.toml" ]] && grep -q "name = \"$APP\"" "$root/pyproject.toml"; then
    source="$root"
  else
    source="$APP"
  fi
fi

if [[ -f "$manifest" ]]; then
  die "already installed (see $manifest); run uninstall.sh first, or use the tray's own update path"
fi

# ---- manifest: every file and directory this script creates, so uninstall removes exactly those ----
record() { printf '%s %s\n' "$1" "$2" >> "$manifest.tmp"; }
app_data_missing=()
d="$app_data"
while [[ ! -d "$d" ]]; do app_data_missing=("$d" "${app_data_missing[@]}"); d="$(dirname "$d")"; done
mkdir -p "$app_data"
: > "$manifest.tmp"
for d in "${app_data_missing[@]}"; do record dir "$d"; done

mkdir_tracked() {  # mkdir -p, recording each directory that did not exist yet (outermost first)
  local dir="$1" missing=()
  while [[ ! -d "$dir" ]]; do missing=("$dir" "${missing[@]}"); dir="$(dirname "$dir")"; done
  local d
  for d in "${missing[@]}"; do mkdir "$d"; record dir "$d"; done
}

install_file() {  # install_file SRC DEST [MODE]
  mkdir_tracked "$(dirname "$2")"
  install -m "${3:-644}" "$1" "$2"
  record file "$2"
}

finish_manifest() { mv "$manifest.tmp" "$manifest"; }
on_exit() {  # a failed install keeps its manifest, so uninstall.sh can remove the half-done parts
  local rc=$?
  if [[ $rc -ne 0 && -f "$manifest.tmp" ]]; then
    mv "$manifest.tmp" "$manifest"
    echo "install.sh: failed; $here/uninstall.sh removes what was installed so far" >&2
  fi
}
trap on_exit EXIT

# ---- the app ---------------------------------------------------------------------------------------
if [[ "$method" == auto ]]; then
  if command -v uv >/dev/null 2>&1; then method=uv
  elif command -v pipx >/dev/null 2>&1; then method=pipx
  else method=venv
  fi
fi

case "$method" in
  uv)
    command -v uv >/dev/null || die "uv is not installed"
    exe="$(realpath -ms "$(uv tool dir --bin)/$APP")"
    mkdir_tracked "$(dirname "$exe")"  # so uninstall removes the bin dir again if uv created it for us
    uv tool install --force "$source"
    record tool uv
    ;;
  pipx)
    command -v pipx >/dev/null || die "pipx is not installed"
    exe="$(pipx environment --value PIPX_BIN_DIR 2>/dev/null || echo "$HOME/.local/bin")/$APP"
    mkdir_tracked "$(dirname "$exe")"
    pipx install --force "$source"
    record tool pipx
    ;;
  venv)
    "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
      || die "$python is older than Python 3.10; pass --python /path/to/python3.10+"
    "$python" -c 'import venv, ensurepip' 2>/dev/null \
      || die "$python cannot create virtual environments; install your distro's python3-venv package"
    venv="$app_data/venv"
    record venv "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$source"
    exe="$venv/bin/$APP"
    link="$bin_home/$APP"
    if [[ -e "$link" || -L "$link" ]] && [[ "$(readlink -f "$link")" != "$(readlink -f "$exe")" ]]; then
      echo "install.sh: $link exists and is not ours; leaving it (start the app as $exe)" >&2
    else
      mkdir_tracked "$bin_home"
      ln -sfn "$exe" "$link"
      record file "$link"
    fi
    ;;
esac
[[ -x "$exe" ]] || die "installation finished but $exe is missing"
"$exe" --version >/dev/null || die "$exe does not start"

# ---- launcher entry and icon (XDG data dirs) ---------------------------------------------------------
desktop_quote() {  # one Exec= argument, quoted per the Desktop Entry spec when it needs it
  local arg="$1"
  if [[ "$arg" =~ [[:space:]\"\'\\\>\<~\|\&\;\$\*\?\#\(\)\`] ]]; then
    arg="${arg//\\/\\\\}"; arg="${arg//\"/\\\"}"; arg="${arg//\`/\\\`}"; arg="${arg//\$/\\\$}"
    arg="\"$arg\""
    arg="${arg//\\/\\\\}"
  fi
  printf '%s' "${arg//%/%%}"
}
entry="$data_home/applications/$APP.desktop"
mkdir_tracked "$(dirname "$entry")"
sed -e "s|^Exec=.*|Exec=$(desktop_quote "$exe" | sed 's/[|&\\]/\\&/g') run|" \
    -e "s|^TryExec=.*|TryExec=$(desktop_quote "$exe" | sed 's/[|&\\]/\\&/g')|" \
    "$here/$APP.desktop" > "$entry"
record file "$entry"

icons="$root/assets/app-icon"
for size in 48 128 256; do
  src="$icons/$APP-$size.png"
  if [[ -f "$src" ]]; then
    install_file "$src" "$data_home/icons/hicolor/${size}x${size}/apps/$APP.png"
  else
    echo "install.sh: icon $src missing; the launcher shows a generic icon" >&2
  fi
done

# A copy of the uninstaller that outlives the checkout.
install_file "$here/uninstall.sh" "$app_data/uninstall.sh" 755

# ---- autostart: only when the user says so ---------------------------------------------------------
if [[ "$autostart" == ask ]]; then
  autostart=no
  if [[ $assume_yes -eq 0 && -t 0 && -t 1 ]]; then
    read -r -p "Start LM Studio Tray at login? [y/N] " answer || answer=""
    [[ "$answer" =~ ^[Yy] ]] && autostart=yes
  fi
fi
if [[ "$autostart" == yes ]]; then
  mkdir_tracked "$config_home/autostart"
  "$exe" autostart enable >/dev/null
  record autostart xdg
fi

finish_manifest
trap - EXIT
echo "Installed lmstudio-tray ($method): $exe"
echo "  launcher: $entry"
if [[ "$autostart" == yes ]]; then
  echo "  starts at login (turn off with: $APP autostart disable, or the tray's Start at login item)"
else
  echo "  not started at login (turn on with: $APP autostart enable, or the tray's Start at login item)"
fi
[[ ":$PATH:" == *":$bin_home:"* || "$method" != venv ]] || echo "  note: $bin_home is not on your PATH"
echo "  uninstall: $app_data/uninstall.sh"
