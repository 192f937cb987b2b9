#!/usr/bin/env bash
# Install the headless browser the labelling tool's page tests drive (DESIGN.md §8).
#
#   .ci/install_browser.sh
#
# Debian's `chromium` and `chromium-driver` packages (selenium, from the dev extra, talks to the
# driver). Idempotent: nothing is done when both binaries are already there. Nothing is ever
# downloaded at test time. An apt failure is only a warning: the browser tests then skip, naming
# the missing binary.
set -euo pipefail

if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { echo "install_browser: need root or sudo for apt-get; browser tests will skip" >&2; exit 0; }
    SUDO="sudo"
fi
if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver; }; then
    echo "install_browser: apt-get install chromium chromium-driver failed; browser tests will skip" >&2
fi
