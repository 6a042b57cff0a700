#!/usr/bin/env bash
# scripts/with-desktop.sh CMD [ARGS...]
#
# Runs CMD inside a throwaway Linux test desktop and exits with CMD's status:
#   - Xvfb on a free display (-displayfd, so parallel runs do not clash), exported as DISPLAY;
#   - a private D-Bus session bus (dbus-run-session), its activation environment updated so that
#     D-Bus-activated services see DISPLAY and the isolated XDG dirs;
#   - trayer (an XEmbed system tray that needs no window manager);
#   - dunst as org.freedesktop.Notifications, every urgency with timeout = 0 (history via dunstctl);
#   - an unlocked throwaway gnome-keyring as org.freedesktop.secrets;
#   - XDG_{RUNTIME,CONFIG,DATA,CACHE,STATE}_DIR and HOME-independent state in $DESKTOP_TMP, removed at exit.
# Everything it starts is stopped by PID. Exit status: CMD's, or 125 when the desktop did not come up.
#
# Debian packages (scripts/deps/desktop.sh installs them):
#   xvfb x11-utils xdotool imagemagick trayer dunst libnotify-bin gnome-keyring libsecret-tools
#   libglib2.0-bin dbus
set -uo pipefail

if [[ $# -eq 0 ]]; then
  echo "usage: $0 CMD [ARGS...]" >&2
  exit 2
fi

log() { echo "with-desktop: $*" >&2; }

wait_until() {  # wait_until SECONDS CMD... : poll every 0.05 s
  local deadline=$((SECONDS + $1)) tries=0
  shift
  until "$@" >/dev/null 2>&1; do
    tries=$((tries + 1))
    if ((SECONDS >= deadline && tries > 20)); then return 1; fi
    sleep 0.05
  done
}

has_owner() {
  gdbus call --session --dest org.freedesktop.DBus --object-path /org/freedesktop/DBus \
    --method org.freedesktop.DBus.NameHasOwner "$1" 2>/dev/null | grep -q true
}

# ---- inner half: runs inside dbus-run-session ------------------------------------------------------
if [[ "${1:-}" == "--inside-bus" ]]; then
  shift
  pids=()
  cmd_pid=""
  stop_inner() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  }
  on_signal() {
    # Give CMD a moment to clean up after itself (it got the same Ctrl-C), then end it.
    if [[ -n "$cmd_pid" ]] && kill -0 "$cmd_pid" 2>/dev/null; then
      kill -TERM "$cmd_pid" 2>/dev/null
      for _ in $(seq 30); do kill -0 "$cmd_pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$cmd_pid" 2>/dev/null
    fi
    stop_inner
    exit 130
  }
  trap on_signal INT TERM
  # dbus-run-session does not pass signals on, so the outer half signals this shell directly.
  echo $$ >"$DESKTOP_TMP/inner.pid"

  dbus-update-activation-environment DISPLAY NO_AT_BRIDGE XDG_RUNTIME_DIR XDG_CONFIG_HOME \
    XDG_DATA_HOME XDG_CACHE_HOME XDG_STATE_HOME >/dev/null 2>&1

  dunst -config "$DESKTOP_TMP/dunstrc" >"$DESKTOP_TMP/dunst.log" 2>&1 &
  pids+=($!)
  # gnome-keyring daemonizes and leaves with the bus; nothing to track.
  printf 'with-desktop' | gnome-keyring-daemon --unlock --components=secrets --daemonize \
    >"$DESKTOP_TMP/keyring.log" 2>&1
  trayer --edge top --align right --widthtype pixel --width 200 --height 40 \
    --transparent false --SetDockType false >"$DESKTOP_TMP/trayer.log" 2>&1 &
  pids+=($!)

  ok=1
  wait_until 5 has_owner org.freedesktop.Notifications || { log "dunst did not appear"; ok=0; }
  wait_until 5 has_owner org.freedesktop.secrets || log "gnome-keyring did not appear (keyring tests will fail)"
  wait_until 5 bash -c 'xwininfo -root -tree | grep -q "\"panel\""' || { log "trayer did not appear"; ok=0; }
  if ((ok == 0)); then
    stop_inner
    exit 125
  fi

  "$@" <&0 &
  cmd_pid=$!
  wait "$cmd_pid"
  rc=$?
  # `wait` returns >128 when a trapped signal interrupted it; the trap has already exited then.
  stop_inner
  exit "$rc"
fi

# ---- outer half: Xvfb and the temporary directory -------------------------------------------------
for tool in Xvfb dbus-run-session dbus-update-activation-environment gdbus dunst trayer \
  gnome-keyring-daemon xwininfo; do
  if ! command -v "$tool" >/dev/null; then
    log "$tool is missing; run scripts/deps/desktop.sh (as root) first"
    exit 125
  fi
done

DESKTOP_TMP="$(mktemp -d "${TMPDIR:-/tmp}/desktop.XXXXXX")"
export DESKTOP_TMP
xvfb_pid=""
inner_pid=""

cleanup() {
  if [[ -n "$inner_pid" ]] && kill -0 "$inner_pid" 2>/dev/null; then
    local shell_pid
    shell_pid="$(cat "$DESKTOP_TMP/inner.pid" 2>/dev/null)"
    [[ -n "$shell_pid" ]] && kill -TERM "$shell_pid" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$inner_pid" 2>/dev/null || break; sleep 0.1; done
    kill -TERM "$inner_pid" 2>/dev/null
  fi
  if [[ -n "$xvfb_pid" ]]; then
    kill "$xvfb_pid" 2>/dev/null
    wait "$xvfb_pid" 2>/dev/null
  fi
  rm -rf "$DESKTOP_TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$DESKTOP_TMP"/{runtime,config,data,cache,state}
chmod 700 "$DESKTOP_TMP/runtime"
# `dunstctl context` pipes the actions of the shown bubbles to "dmenu"; this one prints the first line
# containing the text in $DESKTOP_TMP/dmenu-pick, which is how tests press a notification button.
cat >"$DESKTOP_TMP/dmenu.sh" <<EOF
#!/bin/sh
cat >"$DESKTOP_TMP/dmenu.in"
grep -m1 -F -- "\$(cat "$DESKTOP_TMP/dmenu-pick" 2>/dev/null)" "$DESKTOP_TMP/dmenu.in"
EOF
chmod +x "$DESKTOP_TMP/dmenu.sh"
# Bubbles stay until closed, so tests can read them; dunstctl close-all moves them to history.
cat >"$DESKTOP_TMP/dunstrc" <<EOF
[global]
    monitor = 0
    follow = none
    dmenu = $DESKTOP_TMP/dmenu.sh
[urgency_low]
    timeout = 0
[urgency_normal]
    timeout = 0
[urgency_critical]
    timeout = 0
EOF

exec 3>"$DESKTOP_TMP/displayfd"
Xvfb -displayfd 3 -screen 0 1024x768x24 -nolisten tcp >"$DESKTOP_TMP/xvfb.log" 2>&1 &
xvfb_pid=$!
exec 3>&-
if ! wait_until 10 grep -q '[0-9]' "$DESKTOP_TMP/displayfd"; then
  log "Xvfb did not start: $(tail -3 "$DESKTOP_TMP/xvfb.log")"
  exit 125
fi
DISPLAY=":$(tr -dc '0-9' <"$DESKTOP_TMP/displayfd")"
export DISPLAY
export NO_AT_BRIDGE=1  # no accessibility bus: it would write to ~/.cache and slow GTK start-up
export XDG_RUNTIME_DIR="$DESKTOP_TMP/runtime" XDG_CONFIG_HOME="$DESKTOP_TMP/config" \
  XDG_DATA_HOME="$DESKTOP_TMP/data" XDG_CACHE_HOME="$DESKTOP_TMP/cache" XDG_STATE_HOME="$DESKTOP_TMP/state"
unset DBUS_SESSION_BUS_ADDRESS WAYLAND_DISPLAY

# dbus-run-session as root prints "Failed to set fd limit"; it is harmless, so keep it out of sight.
dbus-run-session -- bash "${BASH_SOURCE[0]}" --inside-bus "$@" <&0 \
  2> >(grep -v --line-buffered 'Failed to set fd limit' >&2) &
inner_pid=$!
wait "$inner_pid"
rc=$?
inner_pid=""
exit "$rc"
