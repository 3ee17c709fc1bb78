#!/usr/bin/env bash
# The demo: train on the bundled Taiwan data, validate, promote if the gate passes, score.
# Uses the embedded defaults: all state under ${CREDITOPS_HOME:-./.creditops}.
set -euo pipefail
cd "$(dirname "$0")/.."
export CREDITOPS_HOME="${CREDITOPS_HOME:-$PWD/.creditops}"
name=taiwan

echo "== 1/4 train (LightGBM + scorecard baseline) on data/taiwan_credit_card.csv"
creditops train --spec data/specs/taiwan.yaml --data data/taiwan_credit_card.csv \
  --name "$name" --policy data/policies/taiwan.yaml --json > "$CREDITOPS_HOME.train.json" || {
  echo "training failed"; exit 1; }
version=$(python -c "import json,sys; print(json.load(open(sys.argv[1]))['version'])" "$CREDITOPS_HOME.train.json")
python - "$CREDITOPS_HOME.train.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
m = d["metrics"]
print(f"   version {d['version']}: AUC {m['auc']:.4f}  Gini {m['gini']:.4f}  KS {m['ks']:.4f}  Brier {m['brier']:.4f}")
PY
rm -f "$CREDITOPS_HOME.train.json"

echo "== 2/4 validate against data/gates/taiwan.yaml"
if creditops validate --name "$name" --version "$version" --profile data/gates/taiwan.yaml; then
  echo "== 3/4 promote version $version to production"
  creditops models promote --name "$name" --version "$version" --to production
else
  echo "== 3/4 the gate failed: version $version is NOT promoted"
  exit 1
fi

echo "== 4/4 score 1,000 applicants with the production model"
mkdir -p "$CREDITOPS_HOME/demo"
head -n 1001 data/taiwan_credit_card.csv > "$CREDITOPS_HOME/demo/applicants.csv"
creditops score --name "$name" --alias production \
  --input "$CREDITOPS_HOME/demo/applicants.csv" --output "$CREDITOPS_HOME/demo/scored.csv"

echo
echo "Where to look:"
echo "  reports:      $CREDITOPS_HOME/reports/$name/v$version/"
echo "  scored file:  $CREDITOPS_HOME/demo/scored.csv"
echo "  versions:     .venv/bin/creditops models list"
echo "  MLflow UI:    .venv/bin/mlflow ui --backend-store-uri sqlite:///$CREDITOPS_HOME/mlflow.db --port 5000"
