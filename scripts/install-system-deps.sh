#!/usr/bin/env bash
# Installs the Debian packages the platform needs, when missing (as root; otherwise it names them and stops).
# Usage: install-system-deps.sh [run|test|bench]: what `make run` needs (the default), and what the tests or the
# benches need besides.
set -euo pipefail
purpose="${1:-run}"
case "$purpose" in run|test|bench) ;; *) echo "usage: $0 [run|test|bench]" >&2; exit 2 ;; esac
missing=()
# `python3 -m venv` needs ensurepip, which Debian ships apart from Python.
python3 -c 'import ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
# As root the project starts PostgreSQL as the postgres user, through runuser.
[ "$(id -u)" -ne 0 ] || command -v runuser >/dev/null 2>&1 || missing+=(util-linux)
# PostgreSQL's JDBC driver: local Spark reads the warehouse with it (the MLlib engine's observations).
[ -f /usr/share/java/postgresql.jar ] || missing+=(libpostgresql-jdbc-java)
if [ "$purpose" != run ]; then
  # The fare page's browser tests drive this Chromium (playwright's own browser download is not used).
  [ -x /usr/bin/chromium ] || missing+=(chromium)
fi
if [ "$purpose" = bench ]; then
  # bench/fare_page_load.py's load generator (C, so the client takes little of the server's CPU).
  command -v wrk >/dev/null 2>&1 || missing+=(wrk)
fi
if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages: ${missing[*]}; install them as root: apt-get install -y ${missing[*]}" >&2
  exit 1
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
