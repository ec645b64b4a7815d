#!/usr/bin/env bash
# Run once by the postgres image on an empty data directory: makes weir's
# schema-owner and app roles (roles.sql) with the passwords from the secrets.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username postgres --dbname postgres \
    -v owner=weir_owner -v app=weir_app -v db="${POSTGRES_DB:-weir}" \
    -v owner_password="$(cat /run/secrets/db_owner_password)" \
    -v app_password="$(cat /run/secrets/db_app_password)" \
    -f /weir/roles.sql
