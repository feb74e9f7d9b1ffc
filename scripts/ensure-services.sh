#!/usr/bin/env bash
# Make sure the services the tests use accept connections on 127.0.0.1, starting any that does not:
# Redis (6379), MariaDB (3306, root without password) and PostgreSQL (5432, trust auth).
# Idempotent: a service that is already up is left alone. Prints one line per service; exits 1
# if one cannot be started. Ports and the wait can be overridden for testing this script:
#   REDIS_PORT=6390 WAIT_SECONDS=5 scripts/ensure-services.sh
set -uo pipefail

HOST=127.0.0.1
REDIS_PORT=${REDIS_PORT:-6379}
MARIADB_PORT=${MARIADB_PORT:-3306}
POSTGRES_PORT=${POSTGRES_PORT:-5432}
WAIT_SECONDS=${WAIT_SECONDS:-30}

have() { command -v "$1" >/dev/null 2>&1; }

tcp_open() { timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null; }

# "Accepts connections" means answers its protocol, not merely an open port (PostgreSQL accepts
# TCP while it is still starting up).
redis_ready() {
    if have redis-cli; then
        [ "$(timeout 3 redis-cli -h "$HOST" -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]
    else
        tcp_open "$REDIS_PORT"
    fi
}

mariadb_ready() {
    local admin
    admin=$(command -v mariadb-admin || command -v mysqladmin || true)
    if [ -n "$admin" ]; then
        timeout 5 "$admin" --protocol=tcp -h "$HOST" -P "$MARIADB_PORT" -u root \
            --connect-timeout=3 ping >/dev/null 2>&1
    else
        tcp_open "$MARIADB_PORT"
    fi
}

postgres_ready() {
    if have pg_isready; then
        timeout 5 pg_isready -q -h "$HOST" -p "$POSTGRES_PORT" -t 3
    else
        tcp_open "$POSTGRES_PORT"
    fi
}

redis_start() {
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" --save "" \
        --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
}

mariadb_start() {
    # The socket directory lives on a tmpfs that a reboot empties.
    if [ ! -d /run/mysqld ]; then
        mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null
    fi
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
}

postgres_start() {
    local version status=0
    [ -d /etc/postgresql ] || { echo "no clusters in /etc/postgresql" >&2; return 1; }
    for version in $(ls /etc/postgresql); do
        [ -d "/etc/postgresql/$version/main" ] || continue
        pg_ctlcluster --skip-systemctl-redirect "$version" main start || status=$?
    done
    return $status
}

REDIS_HINT='redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log (log: /var/log/redis/ci.log)'
MARIADB_HINT='start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd (log: journal or /var/lib/mysql/*.err)'
POSTGRES_HINT='pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start (log: /var/log/postgresql/)'

failed=0

# ensure NAME PORT: check, start if needed, wait, print one line.
ensure() {
    local name=$1 port=$2 hint output waited=0
    hint=${name^^}_HINT
    hint=${!hint}
    if "${name}_ready"; then
        printf '%-10s up       %s:%s\n' "$name" "$HOST" "$port"
        return 0
    fi
    output=$("${name}_start" 2>&1)
    while ! "${name}_ready"; do
        if [ "$waited" -ge "$WAIT_SECONDS" ]; then
            printf '%-10s FAILED   %s:%s does not accept connections %ss after starting it.\n' \
                "$name" "$HOST" "$port" "$WAIT_SECONDS"
            printf '           start command: %s\n' "$hint"
            [ -n "$output" ] && printf '           it said: %s\n' "$(tail -n 5 <<<"$output")"
            failed=1
            return 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
    printf '%-10s started  %s:%s (ready after %ss)\n' "$name" "$HOST" "$port" "$waited"
}

ensure redis "$REDIS_PORT"
ensure mariadb "$MARIADB_PORT"
ensure postgres "$POSTGRES_PORT"

if [ "$failed" -ne 0 ]; then
    echo "ensure-services: a service the tests need is not running (see above)." >&2
    exit 1
fi
