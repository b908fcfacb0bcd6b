#!/bin/sh
# Keys, token and passwords for the local stack (deploy/docker-compose.yml), made once with the
# project's own commands (run `make setup` first) into deploy/compose/keys/ and deploy/.env, both
# git-ignored. Development only: a real deployment's come from its secret store (deploy/README.md).
#
#   deploy/compose/keys.sh          (from anywhere; PYTHON=... to use another interpreter)
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
keys="$root/deploy/compose/keys"
python=${PYTHON:-$root/.venv/bin/python}
cd "$root"
umask 077
mkdir -p "$keys"
chmod 700 "$keys"

random() { "$python" -c 'import secrets; print(secrets.token_urlsafe(32))'; }

# The worker's signing key (system hallflow) and starter.py's (hallflow-cli, for the host), their
# public halves in public.toml; the data key that encrypts payloads and personal data.
[ -f "$keys/worker.key" ] || "$python" starter.py admin keys new --principal hallflow \
    --private-out "$keys/worker.key" --public-file "$keys/public.toml" >/dev/null
[ -f "$keys/hallflow-cli.key" ] || "$python" starter.py admin keys new --principal hallflow-cli \
    --private-out "$keys/hallflow-cli.key" --public-file "$keys/public.toml" >/dev/null
[ -f "$keys/data-keys.toml" ] || "$python" starter.py admin data-key new --file "$keys/data-keys.toml" >/dev/null
for name in codec-token postgres-password temporal-db-password hallflow-db-password; do
    [ -f "$keys/$name" ] || random > "$keys/$name"
done
# The containers run as other users (hallflow 10001, postgres 999, temporal 1000) and see each file
# through a bind mount with its mode from here: the files are readable by all, and the directory
# around them by you alone.
chmod 644 "$keys"/*

# What compose itself must read: the Temporal server takes its database password from the
# environment only, and the Web UI's codec endpoint carries the token in its path (docs/security.md).
cat > "$root/deploy/.env" <<ENV
# Written by deploy/compose/keys.sh for deploy/docker-compose.yml: never commit it.
STACK_TEMPORAL_DB_PASSWORD=$(cat "$keys/temporal-db-password")
STACK_CODEC_TOKEN=$(cat "$keys/codec-token")
ENV
echo "keys in $keys, compose variables in deploy/.env"
