#!/usr/bin/env bash
# Debian's chromium and its WebDriver for `make test-ui`, installed with apt-get when missing (as
# root, as CI runs). Playwright drives /usr/bin/chromium; it never downloads a browser of its own.
set -euo pipefail
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "make test-ui needs /usr/bin/chromium: run as root, or apt-get install chromium chromium-driver" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends chromium chromium-driver
