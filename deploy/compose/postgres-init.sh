#!/bin/sh
# Run once by the postgres image, on its first start (an empty data volume), as the superuser:
# Temporal's two databases and hallflow's own, each owned by its own role. The passwords are the
# stack's secrets (deploy/compose/keys.sh writes them), passed to psql as variables, never in SQL text.
set -eu
secrets=/run/secrets
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -v temporal_pw="$(cat "$secrets/temporal_db_password")" \
    -v hallflow_pw="$(cat "$secrets/hallflow_db_password")" <<'SQL'
CREATE ROLE temporal LOGIN PASSWORD :'temporal_pw';
CREATE DATABASE temporal OWNER temporal;
CREATE DATABASE temporal_visibility OWNER temporal;
CREATE ROLE hallflow LOGIN PASSWORD :'hallflow_pw';
CREATE DATABASE hallflow OWNER hallflow;
SQL
