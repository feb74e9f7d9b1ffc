#!/usr/bin/env bash
# Make sure the benchmark's external tools are installed: nginx (the fast fake upstream) and wrk
# (the load generator). Debian/Ubuntu only (apt-get). Idempotent: does nothing when both are
# present, runs `apt-get update` only when something has to be installed, and stays quiet unless
# it fails (then it shows apt-get's output and says what to do).
set -euo pipefail

say() { echo "ensure-tools: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

# nginx lives in /usr/sbin, which is not on every user's PATH.
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/local/sbin/$1" ]; }

missing_tools=()
have nginx || missing_tools+=(nginx)
have wrk || missing_tools+=(wrk)
[ ${#missing_tools[@]} -eq 0 ] && exit 0

say "missing: ${missing_tools[*]}; installing with apt-get"
command -v apt-get >/dev/null 2>&1 ||
    die "apt-get not found: install ${missing_tools[*]} with your package manager, then re-run"

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 ||
        die "not root and sudo is not installed: as root run: apt-get install nginx-light wrk"
    SUDO=(sudo)
fi

log=$(mktemp -t aigw-ensure-tools.XXXXXX)
trap 'rm -f "$log"' EXIT
apt() {
    if ! "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "$@" >"$log" 2>&1; then
        tail -n 30 "$log" >&2
        return 1
    fi
}

apt update || die "apt-get update failed (no network or no apt sources?); output above"

packages=()
for tool in "${missing_tools[@]}"; do
    case "$tool" in
    nginx)
        # nginx-light (Debian <= 12) is the small build; newer releases ship only `nginx`.
        if apt-cache show nginx-light >/dev/null 2>&1; then
            packages+=(nginx-light)
        else
            packages+=(nginx)
        fi
        ;;
    wrk) packages+=(wrk) ;;
    esac
done

apt install -y -qq --no-install-recommends "${packages[@]}" ||
    die "apt-get install ${packages[*]} failed; output above"

for tool in "${missing_tools[@]}"; do
    have "$tool" || die "installed ${packages[*]} but '$tool' is still not found"
done
say "installed ${packages[*]}"
