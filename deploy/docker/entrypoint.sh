#!/bin/sh
# Entrypoint of the creditops image: adapt what a platform provides to what creditops and
# MLflow expect, then run the command (default: creditops serve).
#
# - MLFLOW_HOSTPORT (e.g. Render's fromService hostport of the MLflow private service)
#   becomes CREDITOPS_MLFLOW_URI=http://HOST:PORT unless that is set already.
# - MLFLOW_BACKEND_STORE_URI (the MLflow server's database, when it runs from this image)
#   given as plain postgresql:// or postgres:// uses the psycopg 3 driver that the image
#   ships (SQLAlchemy would otherwise look for psycopg2, which it does not).
set -eu

if [ -z "${CREDITOPS_MLFLOW_URI:-}" ] && [ -n "${MLFLOW_HOSTPORT:-}" ]; then
  export CREDITOPS_MLFLOW_URI="http://${MLFLOW_HOSTPORT}"
fi

case "${MLFLOW_BACKEND_STORE_URI:-}" in
  postgresql://*) export MLFLOW_BACKEND_STORE_URI="postgresql+psycopg://${MLFLOW_BACKEND_STORE_URI#postgresql://}" ;;
  postgres://*) export MLFLOW_BACKEND_STORE_URI="postgresql+psycopg://${MLFLOW_BACKEND_STORE_URI#postgres://}" ;;
esac

exec "$@"
