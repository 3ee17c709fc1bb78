#!/usr/bin/env bash
# The browser the /docs test drives (tests/integration/test_docs_browser.py): Debian's
# chromium, installed with apt-get when it is missing (as root, or with sudo). Playwright
# only drives it (the `playwright` Python package of the dev extra); Playwright's own
# browser builds are never downloaded.
#
# Exit 0 when /usr/bin/chromium (or $CREDITOPS_CHROMIUM) runs; 1 when it could not be had.
set -uo pipefail

CHROMIUM="${CREDITOPS_CHROMIUM:-/usr/bin/chromium}"

works() {
  "$CHROMIUM" --headless --no-sandbox --disable-gpu --version >/dev/null 2>&1
}

if works; then
  echo "chromium: $("$CHROMIUM" --version 2>/dev/null | head -n 1)"
  exit 0
fi

SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    echo "error: chromium is missing and installing it needs root: apt-get install -y chromium" >&2
    exit 1
  fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "error: chromium is missing and there is no apt-get here; install Chromium and set CREDITOPS_CHROMIUM" >&2
  exit 1
fi
echo "chromium is missing: installing Debian's chromium package (apt-get install -y chromium)"
$SUDO apt-get update -qq >/dev/null 2>&1
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium \
  >/dev/null 2>&1
if works; then
  echo "chromium: $("$CHROMIUM" --version 2>/dev/null | head -n 1)"
  exit 0
fi
echo "error: chromium could not be installed (apt-get install -y chromium)" >&2
exit 1
