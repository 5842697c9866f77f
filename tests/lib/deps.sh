#!/usr/bin/env bash
# Install the Debian packages drd needs to build and test, when missing.
# Runs apt-get (as root) only if something is actually missing.
set -euo pipefail
pkgs=(build-essential pkg-config libpq-dev libmicrohttpd-dev libcurl4-openssl-dev
      libsqlite3-dev libjansson-dev libcmocka-dev postgresql-15 postgresql-client-15
      sqlite3 curl procps util-linux jq strace)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "deps: missing Debian packages: ${missing[*]} (run 'make deps' as root)" >&2
  exit 1
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
