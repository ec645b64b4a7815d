#!/usr/bin/env bash
# Makes deploy/secrets/ for compose.yaml: random passwords for PostgreSQL's
# superuser and weir's two roles, the database URLs that carry them, and the
# lb's admin token. Keeps files that exist. Never commit deploy/secrets/.
set -euo pipefail
dir="$(cd "$(dirname "$0")" && pwd)/secrets"
mkdir -p "$dir"
chmod 700 "$dir"
random() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
make() { [ -s "$dir/$1" ] || { printf '%s' "$2" >"$dir/$1"; chmod 600 "$dir/$1"; }; }
make postgres_password "$(random)"
make db_owner_password "$(random)"
make db_app_password "$(random)"
make admin_token "$(random)"
make db_owner_url "postgres://weir_owner:$(cat "$dir/db_owner_password")@postgres:5432/weir"
make db_app_url "postgres://weir_app:$(cat "$dir/db_app_password")@postgres:5432/weir"
echo "secrets in $dir (admin token: $(cat "$dir/admin_token"))"
