#!/usr/bin/env bash
# The pipeline's model validation stage: train the demo model in a throwaway home and run
# its validation gate. A failing gate (exit 1) fails the pipeline.
set -euo pipefail
cd "$(dirname "$0")/.."
CREDITOPS_HOME=$(mktemp -d)
export CREDITOPS_HOME
trap 'rm -rf "$CREDITOPS_HOME"' EXIT
creditops=.venv/bin/creditops
echo "== model validation: train the Taiwan demo model and run data/gates/taiwan.yaml"
version=$("$creditops" train --spec data/specs/taiwan.yaml --data data/taiwan_credit_card.csv \
  --name taiwan --policy data/policies/taiwan.yaml --json \
  | .venv/bin/python -c 'import json, sys; print(json.load(sys.stdin)["version"])')
"$creditops" validate --name taiwan --version "$version" --profile data/gates/taiwan.yaml
echo "model validation: the gate passed"
