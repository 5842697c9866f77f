#!/usr/bin/env bash
# Install what drd needs to build and test, when missing: Debian packages
# (apt-get, as root; `apt-get update` once, only if something is missing),
# Node.js when there is none, and the browser test's npm packages.
set -euo pipefail
cd "$(dirname "$0")/../.."
pkgs=(build-essential pkg-config libpq-dev libmicrohttpd-dev libcurl4-openssl-dev
      libsqlite3-dev libjansson-dev libcmocka-dev postgresql-15 postgresql-client-15
      sqlite3 curl procps util-linux jq strace chromium wrk clang libclang-rt-14-dev pgbouncer)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# Node.js: any install will do (the machine may carry its own, with npm).
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "deps: missing packages: ${missing[*]} (run 'make deps' as root)" >&2
    exit 1
  fi
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# playwright-core for tests/browser (the browser itself is Debian's chromium).
if [ ! -d tests/browser/node_modules/playwright-core ]; then
  echo "deps: npm ci in tests/browser"
  (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
