#!/usr/bin/env bash
# Start a real MLflow tracking server for difflab runs.
#
#   infra/mlflow-server.sh                         # SQLite in ./mlflow-server/, http://127.0.0.1:5000
#   BACKEND=postgresql://user:pw@db:5432/mlflow ARTIFACTS=/shared/mlartifacts infra/mlflow-server.sh
#   HOST=0.0.0.0 ALLOWED_HOSTS=head-node PORT=5000 infra/mlflow-server.sh   # reachable from a cluster
#
# Then point difflab at it: export MLFLOW_TRACKING_URI=http://127.0.0.1:5000 (or tracking.uri in the spec).
# The server binds to localhost unless HOST says otherwise; it has no authentication, so expose it
# only inside a trusted network (or add --app-name basic-auth through EXTRA_ARGS).
set -euo pipefail
ROOT=${ROOT:-$PWD/mlflow-server}
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-5000}
BACKEND=${BACKEND:-sqlite:///$ROOT/mlflow.db}
ARTIFACTS=${ARTIFACTS:-$ROOT/mlartifacts}
WORKERS=${WORKERS:-2}
mkdir -p "$ROOT" "$ARTIFACTS"
args=(--backend-store-uri "$BACKEND" --artifacts-destination "$ARTIFACTS" --serve-artifacts
      --host "$HOST" --port "$PORT" --workers "$WORKERS")
if [[ -n "${ALLOWED_HOSTS:-}" ]]; then args+=(--allowed-hosts "$ALLOWED_HOSTS"); fi
# shellcheck disable=SC2086
exec mlflow server "${args[@]}" ${EXTRA_ARGS:-}
