#!/usr/bin/env bash
# scripts/deps/opencode.sh [DIR]
#
# Installs what the OpenCode tests (tests/opencode, marker `opencode`) need into a project-local
# directory (default: .cache/opencode-deps of the checkout, or $LMSTUDIO_TRAY_OPENCODE_DEPS):
#   - opencode-ai@1.18.33        the real `opencode` binary the end-to-end tests drive
#   - @opencode-ai/plugin@1.18.33 the typed plugin API the plugin is type-checked against (tsc --strict);
#                                 its node_modules copy is also used to pre-seed OpenCode's config dirs
#   - typescript                  tsc for that check
#   - jsonc-parser@3.3.1          the JSONC parser OpenCode reads its config with (bundled in the binary);
#                                 the reference the JSONC reader/editor tests compare against
#
# Idempotent: npm is skipped when all four are already there at the pinned versions.
# Needs node + npm and access to the npm registry on the first run. Exit status is non-zero on failure.
set -euo pipefail

OC_VERSION=1.18.33
TS_VERSION=5.9.3
JSONC_VERSION=3.3.1

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
dir="${1:-${LMSTUDIO_TRAY_OPENCODE_DEPS:-$root/.cache/opencode-deps}}"
# absolute, so node resolves the package.json paths below (a relative DIR made every run reinstall)
mkdir -p "$dir" && dir="$(cd "$dir" && pwd)"

if ! command -v npm >/dev/null; then
  echo "opencode.sh: npm not found; install Node.js 20+ (with npm) first" >&2
  exit 1
fi

installed_version() {
  # Reads package.json directly: `npm ls` is slow and exits non-zero on unrelated peer warnings.
  local pj="$dir/node_modules/$1/package.json"
  [[ -f "$pj" ]] && node -e 'process.stdout.write(require(process.argv[1]).version)' "$pj" 2>/dev/null || true
}

opencode_bin() {
  # The npm package's postinstall links the platform binary to bin/; when install scripts are
  # blocked, the platform package still holds a usable binary.
  local candidate
  for candidate in "$dir/node_modules/.bin/opencode" "$dir"/node_modules/opencode-*/bin/opencode; do
    if [[ -x "$candidate" ]] && "$candidate" --version >/dev/null 2>&1; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

if [[ "$(installed_version opencode-ai)" == "$OC_VERSION" \
   && "$(installed_version @opencode-ai/plugin)" == "$OC_VERSION" \
   && "$(installed_version typescript)" == "$TS_VERSION" \
   && "$(installed_version jsonc-parser)" == "$JSONC_VERSION" ]] && opencode_bin >/dev/null; then
  echo "opencode.sh: already installed in $dir"
else
  if [[ ! -f "$dir/package.json" ]]; then
    printf '{\n  "name": "lmstudio-tray-opencode-deps",\n  "private": true\n}\n' > "$dir/package.json"
  fi
  echo "opencode.sh: installing opencode-ai@$OC_VERSION, @opencode-ai/plugin@$OC_VERSION, typescript@$TS_VERSION," \
       "jsonc-parser@$JSONC_VERSION into $dir"
  (cd "$dir" && npm install --no-audit --no-fund --save-exact \
    "opencode-ai@$OC_VERSION" "@opencode-ai/plugin@$OC_VERSION" "typescript@$TS_VERSION" \
    "jsonc-parser@$JSONC_VERSION" >/dev/null)
fi

bin="$(opencode_bin)" || { echo "opencode.sh: no working opencode binary under $dir/node_modules" >&2; exit 1; }
echo "opencode.sh: opencode $("$bin" --version 2>/dev/null) at $bin"
echo "opencode.sh: tsc $("$dir/node_modules/.bin/tsc" --version)"
echo "opencode.sh: jsonc-parser $(installed_version jsonc-parser)"
