#!/bin/sh
# One-shot job of the compose stack (profile `bootstrap`): train the Taiwan demo model into
# the stack's MLflow server, run the validation gate and promote it to production when the
# gate passes. The data comes from the repository's data/ folder, mounted read-only.
#
#   docker compose --profile bootstrap run --rm bootstrap
#   docker compose restart api worker      # the API registers routes for new models at start
set -eu
name="${MODEL_NAME:-taiwan}"
data="${DATA_DIR:-/data}"

echo "== training $name on $data/taiwan_credit_card.csv"
creditops train --spec "$data/specs/taiwan.yaml" --data "$data/taiwan_credit_card.csv" \
  --name "$name" --policy "$data/policies/taiwan.yaml" --json > /tmp/train.json
version=$(python -c "import json; print(json.load(open('/tmp/train.json'))['version'])")

echo "== validating $name version $version"
if ! creditops validate --name "$name" --version "$version" --profile "$data/gates/taiwan.yaml"; then
  echo "the gate failed: version $version is not promoted" >&2
  exit 1
fi
creditops models promote --name "$name" --version "$version" --to production

# /metrics needs a key with scope monitor (CREDITOPS_SERVE__METRICS_PUBLIC=false): one for
# Prometheus, in the volume its scrape job reads (deploy/prometheus/prometheus.yml).
secrets="${SCRAPE_SECRETS_DIR:-/run/scrape-secrets}"
if [ -d "$secrets" ] && [ ! -s "$secrets/api-key" ]; then
  echo "== creating the API key Prometheus scrapes with"
  creditops keys create --name prometheus --scopes monitor --json \
    | python -c "import json,sys; print(json.load(sys.stdin)['key'])" > "$secrets/api-key"
  chmod 0444 "$secrets/api-key"  # read by the prometheus user of its own container
fi
echo "== $name version $version is in production; restart the api to serve a new model name"
