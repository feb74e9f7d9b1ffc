#!/usr/bin/env bash
# Make sure the tools the test suite runs are installed: Prometheus (`prometheus` and `promtool`,
# from Debian's `prometheus` package), used by tests/deploy and tests/e2e/test_prometheus.py;
# Chromium (Debian's `chromium`, /usr/bin/chromium) with a CJK font, which tests/e2e/test_web.py
# drives headless through Playwright to test the web dashboard (in English and Chinese).
# Debian/Ubuntu only (apt-get). Idempotent: does nothing when every tool is present, runs
# `apt-get update` only when something has to be installed, and stays quiet unless it fails.
#
# The package's service is not started by the installation (a temporary policy-rc.d refuses it
# unless the machine already has one): nothing new listens on :9090, and the tests start their
# own Prometheus on free loopback ports anyway.
set -euo pipefail

say() { echo "ensure-test-tools: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/bin/$1" ]; }

has_cjk_font() { command -v fc-list >/dev/null 2>&1 && [ -n "$(fc-list :lang=zh 2>/dev/null)" ]; }

packages=()
have prometheus && have promtool || packages+=(prometheus)
have chromium || packages+=(chromium)
has_cjk_font || packages+=(fonts-wqy-microhei)
[ "${#packages[@]}" -eq 0 ] && exit 0

say "missing: ${packages[*]}; installing Debian's packages with apt-get"
command -v apt-get >/dev/null 2>&1 ||
    die "apt-get not found: install ${packages[*]} with your package manager"

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 ||
        die "not root and sudo is not installed: as root run: apt-get install ${packages[*]}"
    SUDO=(sudo)
fi

log=$(mktemp -t aigw-ensure-test-tools.XXXXXX)
policy=/usr/sbin/policy-rc.d
made_policy=0
cleanup() {
    rm -f "$log"
    [ "$made_policy" -eq 1 ] && "${SUDO[@]}" rm -f "$policy"
    return 0
}
trap cleanup EXIT

# Keep the package from starting its service (exit code 101: "action forbidden").
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
    "${SUDO[@]}" chmod 755 "$policy"
    made_policy=1
fi

apt() {
    if ! "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "$@" >"$log" 2>&1; then
        tail -n 30 "$log" >&2
        return 1
    fi
}

apt update || die "apt-get update failed (no network or no apt sources?); output above"
apt install -y -qq --no-install-recommends "${packages[@]}" ||
    die "apt-get install ${packages[*]} failed; output above"

have prometheus && have promtool || die "installed prometheus but a binary is still not found"
have chromium || die "installed chromium but /usr/bin/chromium is still not found"
say "installed ${packages[*]}"
