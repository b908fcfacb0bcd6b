#!/bin/sh
# Temporal's schema on the stack's PostgreSQL, brought to the version this admin-tools image ships:
# run before the server on every `docker compose up` (both steps leave an up-to-date schema as it is).
# temporal-sql-tool reads the password from SQL_PASSWORD.
set -eu
SQL_PASSWORD=$(cat /run/secrets/temporal_db_password)
export SQL_PASSWORD
schemas=/etc/temporal/schema/postgresql/v12
for store in temporal:temporal visibility:temporal_visibility; do
    dir=${store%%:*} db=${store#*:}
    temporal-sql-tool --plugin postgres12 --ep postgres -p 5432 -u temporal --db "$db" setup-schema -v 0.0
    temporal-sql-tool --plugin postgres12 --ep postgres -p 5432 -u temporal --db "$db" update-schema -d "$schemas/$dir/versioned"
done
