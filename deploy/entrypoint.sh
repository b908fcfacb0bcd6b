#!/bin/sh
# The image's entrypoint. libpq takes a password from PGPASSWORD only, and a secret is mounted as a
# file: PGPASSWORD_FILE names that file (HALLFLOW_DATABASE_URL then carries no password). The
# command replaces this shell, so python is PID 1 and gets SIGTERM itself (the worker drains).
set -eu
if [ -n "${PGPASSWORD_FILE:-}" ]; then
    PGPASSWORD=$(cat "$PGPASSWORD_FILE")
    export PGPASSWORD
    unset PGPASSWORD_FILE
fi
exec "$@"
