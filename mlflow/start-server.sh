#!/usr/bin/env bash
# Start the MLflow tracking server for this project (config: mlflow/server.env, overridable by env).
# Clients then use:  export MLFLOW_TRACKING_URI=http://$MLFLOW_HOST:$MLFLOW_PORT
set -euo pipefail
PROJECT_ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export PROJECT_ROOT
# shellcheck source=/dev/null
source "$PROJECT_ROOT/mlflow/server.env"
MLFLOW_BIN="${MLFLOW_BIN:-$PROJECT_ROOT/.venv/bin/mlflow}"
command -v "$MLFLOW_BIN" >/dev/null || MLFLOW_BIN=mlflow
echo "mlflow server: backend $MLFLOW_BACKEND_STORE_URI, artifacts $MLFLOW_ARTIFACTS_DESTINATION, http://$MLFLOW_HOST:$MLFLOW_PORT"
exec "$MLFLOW_BIN" server \
  --backend-store-uri "$MLFLOW_BACKEND_STORE_URI" \
  --artifacts-destination "$MLFLOW_ARTIFACTS_DESTINATION" \
  --host "$MLFLOW_HOST" --port "$MLFLOW_PORT" --workers "$MLFLOW_WORKERS" "$@"
