#!/bin/sh
# Install a headless-capable Chromium for the browser tests (tests/test_browser.py)
# and print its path. Idempotent: does nothing when a browser is already there.
#
#   sh scripts/install_browser.sh        -> prints e.g. /usr/bin/chromium
#
# Looks for: $DL4NLP_CHROMIUM, then chromium / chromium-browser / google-chrome on PATH.
# If none is found it installs Debian's or Ubuntu's `chromium` package with apt-get
# (needs root or passwordless sudo). The Python driver (playwright) comes from
# requirements.txt; its own browser download (`playwright install`) is not used.
set -eu

find_browser() {
    if [ -n "${DL4NLP_CHROMIUM:-}" ] && [ -x "${DL4NLP_CHROMIUM}" ]; then
        echo "${DL4NLP_CHROMIUM}"; return 0
    fi
    for name in chromium chromium-browser google-chrome google-chrome-stable; do
        path=$(command -v "$name" 2>/dev/null) || continue
        # Ubuntu's chromium-browser may be a stub that only asks for the snap: check it runs.
        if "$path" --version >/dev/null 2>&1; then echo "$path"; return 0; fi
    done
    return 1
}

if find_browser; then exit 0; fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_browser.sh: no Chromium found and no apt-get to install one." >&2
    echo "Install Chromium or Google Chrome yourself, or set DL4NLP_CHROMIUM=/path/to/chrome." >&2
    exit 1
fi

SUDO=""
if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "install_browser.sh: no Chromium found; installing it needs root:" >&2
        echo "    sudo apt-get install -y chromium" >&2
        exit 1
    fi
fi

echo "install_browser.sh: installing chromium with apt-get ..." >&2
export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get install -y -q chromium >/tmp/dl4nlp-install-browser.log 2>&1; then
    # The package lists may be missing or stale on a fresh machine.
    $SUDO apt-get update -q >>/tmp/dl4nlp-install-browser.log 2>&1 || true
    if ! $SUDO apt-get install -y -q chromium >>/tmp/dl4nlp-install-browser.log 2>&1; then
        echo "install_browser.sh: 'apt-get install chromium' failed; see /tmp/dl4nlp-install-browser.log" >&2
        echo "(On Ubuntu the chromium package is a snap wrapper: install google-chrome and set DL4NLP_CHROMIUM.)" >&2
        exit 1
    fi
fi

if find_browser; then exit 0; fi
echo "install_browser.sh: chromium was installed but no working browser is on PATH" >&2
exit 1
