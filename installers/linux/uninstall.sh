#!/usr/bin/env bash
# Remove what installers/linux/install.sh installed, exactly: the files, links and directories listed in
# $XDG_DATA_HOME/lmstudio-tray/install-manifest.txt, the uv/pipx tool or the virtual environment, and the
# start-at-login entry. Your settings, logs and state stay unless you pass --purge.
#
#   uninstall.sh [--purge]
set -euo pipefail

APP=lmstudio-tray
data_home="${XDG_DATA_HOME:-$HOME/.local/share}"
config_home="${XDG_CONFIG_HOME:-$HOME/.config}"
state_home="${XDG_STATE_HOME:-$HOME/.local/state}"
cache_home="${XDG_CACHE_HOME:-$HOME/.cache}"
app_data="$data_home/$APP"
manifest="$app_data/install-manifest.txt"
purge=0

for arg in "$@"; do
  case "$arg" in
    --purge) purge=1 ;;
    -h|--help) sed -n '2,7p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "uninstall.sh: unknown option: $arg" >&2; exit 2 ;;
  esac
done
[[ -f "$manifest" ]] || { echo "uninstall.sh: nothing to remove ($manifest not found)" >&2; exit 1; }

mapfile -t lines < "$manifest"
exe="" tool=""
for line in "${lines[@]}"; do
  kind="${line%% *}" path="${line#* }"
  case "$kind" in
    venv) exe="$path/bin/$APP" ;;
    tool) tool="$path" ;;
  esac
done
if [[ "$tool" == uv ]] && command -v uv >/dev/null; then exe="$(realpath -ms "$(uv tool dir --bin)/$APP")"; fi
if [[ "$tool" == pipx ]] && command -v pipx >/dev/null; then
  exe="$(pipx environment --value PIPX_BIN_DIR 2>/dev/null || echo "$HOME/.local/bin")/$APP"
fi

# Start at login: the app removes the entries it manages (XDG entry, systemd --user unit), whoever
# turned them on (the installer, the CLI, the tray).
if [[ -n "$exe" && -x "$exe" ]]; then
  "$exe" autostart disable >/dev/null || echo "uninstall.sh: could not switch off start at login" >&2
fi
# Without a working app, remove only entries carrying the app's marker.
entry="$config_home/autostart/$APP.desktop"
if [[ -f "$entry" ]] && grep -q '^X-LMStudioTray-Managed=' "$entry"; then rm -f "$entry"; fi
unit="$config_home/systemd/user/$APP.service"
if [[ -f "$unit" ]] && head -n1 "$unit" | grep -q 'lmstudio-tray autostart'; then
  rm -f "$unit" "$config_home/systemd/user/graphical-session.target.wants/$APP.service"
  rmdir "$config_home/systemd/user/graphical-session.target.wants" 2>/dev/null || true
fi

case "$tool" in
  uv) uv tool uninstall "$APP" || echo "uninstall.sh: 'uv tool uninstall $APP' failed" >&2 ;;
  pipx) pipx uninstall "$APP" || echo "uninstall.sh: 'pipx uninstall $APP' failed" >&2 ;;
esac

# Files and the venv first (newest first), then the directories the installer created, if now empty.
for ((i = ${#lines[@]} - 1; i >= 0; i--)); do
  kind="${lines[i]%% *}" path="${lines[i]#* }"
  case "$kind" in
    file) rm -f -- "$path" ;;
    venv) [[ "$path" == "$app_data"/* ]] && rm -rf -- "$path" ;;
  esac
done
rm -f -- "$manifest"
for ((i = ${#lines[@]} - 1; i >= 0; i--)); do
  kind="${lines[i]%% *}" path="${lines[i]#* }"
  if [[ "$kind" == dir ]]; then rmdir -- "$path" 2>/dev/null || true; fi
done

if [[ $purge -eq 1 ]]; then
  rm -rf -- "${config_home:?}/$APP" "${state_home:?}/$APP" "${cache_home:?}/$APP" "${app_data:?}"
  echo "Removed lmstudio-tray and its settings, state and logs."
  echo "API tokens stay in your keyring (service '$APP'); remove them with your keyring tool."
else
  echo "Removed lmstudio-tray. Your settings are still in $config_home/$APP (uninstall.sh --purge removes them)."
fi
