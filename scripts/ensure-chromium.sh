#!/usr/bin/env bash
# Make Debian's Chromium available for the browser tests (Playwright drives the system browser;
# nothing is downloaded from outside the package registries).
# Exit 0: chromium is there. Exit 3: it is missing and cannot be installed (not root).
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then
  echo "chromium is not installed and this user cannot install it (run 'apt-get install chromium' as root)" >&2
  exit 3
fi
echo "Installing Debian's chromium for the browser tests..."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium >/dev/null
command -v chromium >/dev/null
