#!/bin/sh
# The database child: runs as the postgres user (`user: postgres`). On the first start the data
# directory is empty: make the cluster. Then exec postgres, so it keeps this process's pid and
# sends READY=1 itself to $NOTIFY_SOCKET once it accepts connections.
set -eu
bin=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)}
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  echo "db.sh: no cluster in $PGDATA yet: initdb"
  "$bin/initdb" --pgdata="$PGDATA" --username=postgres --auth=trust --encoding=UTF8 --no-instructions
fi
# Loopback TCP only (no unix socket directory to share); trust is for this example only.
exec "$bin/postgres" -D "$PGDATA" -p "$PGPORT" -c listen_addresses=127.0.0.1 -c unix_socket_directories=
