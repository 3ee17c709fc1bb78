#!/usr/bin/env bash
# Install creditops into a virtual environment from a hash-pinned lock, with progress.
#   scripts/install.sh VENV LOCK
# `make demo` passes requirements.lock (the runtime only); `make install` / `make test` then
# add requirements-dev.lock (linters, type checker, test tools) on top.
set -euo pipefail
venv=$1
lock=$2
python="$venv/bin/python"
total=$(grep -cE '^[A-Za-z0-9][A-Za-z0-9._-]*==' "$lock")
started=$SECONDS

echo "== installing $total pinned packages from $lock into $venv"
"$python" -m pip install --quiet --upgrade pip
# One line per package as pip reaches it; pip's own errors pass through unchanged.
"$python" -m pip install --require-hashes --progress-bar off -r "$lock" 2>&1 |
  awk -v total="$total" '
    /^(Collecting|Processing|Requirement already satisfied:) / {
      n++
      if ($1 == "Collecting") name = $2
      else if ($1 == "Processing") { k = split($2, parts, "/"); name = parts[k]; sub(/-py[0-9].*|-cp[0-9].*/, "", name) }
      else name = $4
      printf "   [%3d/%d] %s\n", n, total, name
      fflush()
      next
    }
    /^(  |Downloading|Using cached|Installing collected|Attempting|Found existing|Uninstalling|WARNING: Location)/ { next }
    { print; fflush() }
  '
echo "== installing creditops itself (editable)"
"$python" -m pip install --quiet --no-deps -e .
echo "== done in $((SECONDS - started)) s"
