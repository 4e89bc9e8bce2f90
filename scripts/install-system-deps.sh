#!/usr/bin/env bash
# Installs the Debian packages the platform and its tests need, when missing (as root; otherwise it names them).
set -euo pipefail
missing=()
command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
# As root the project starts PostgreSQL as the postgres user, through runuser.
[ "$(id -u)" -ne 0 ] || command -v runuser >/dev/null 2>&1 || missing+=(util-linux)
# PostgreSQL's JDBC driver: local Spark reads the warehouse with it (the MLlib engine's observations).
[ -f /usr/share/java/postgresql.jar ] || missing+=(libpostgresql-jdbc-java)
# The fare page's browser tests drive this Chromium (playwright's own browser download is not used).
[ -x /usr/bin/chromium ] || missing+=(chromium)
# bench/fare_page_load.py's load generator (C, so the client takes little of the server's CPU).
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages: ${missing[*]}; install them as root: apt-get install -y ${missing[*]}" >&2
  exit 1
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
