#!/usr/bin/env bash
# Makes sure the PostgreSQL the tests use is up on 127.0.0.1:5432 (user
# postgres, trust auth, database `test`). Starts the local cluster if it is
# down; installs PostgreSQL from Debian's packages if the machine has none.
# Tests create their own fresh database per test on this server.
set -euo pipefail

host=127.0.0.1
port=5432

if pg_isready -q -h "$host" -p "$port" 2>/dev/null; then
  exit 0
fi

if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
  echo "ensure-postgres: PostgreSQL is not installed; installing it" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq postgresql >/dev/null
  version=$(ls /etc/postgresql | head -n 1)
  # Trust auth for local test connections only (loopback and socket).
  cat > "/etc/postgresql/$version/main/pg_hba.conf" <<HBA
local all all trust
host all all 127.0.0.1/32 trust
host all all ::1/128 trust
HBA
fi

version=$(ls /etc/postgresql | head -n 1)
echo "ensure-postgres: starting PostgreSQL $version" >&2
pg_ctlcluster --skip-systemctl-redirect "$version" main start || true

for _ in $(seq 1 60); do
  if pg_isready -q -h "$host" -p "$port"; then
    psql -h "$host" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='test'" | grep -q 1 \
      || psql -h "$host" -U postgres -c "CREATE DATABASE test" >/dev/null
    exit 0
  fi
  sleep 0.5
done
echo "ensure-postgres: PostgreSQL did not come up on $host:$port" >&2
exit 1
