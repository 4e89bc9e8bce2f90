#!/usr/bin/env bash
# Installs the Debian packages the platform needs, when missing (as root; otherwise it names them and stops).
# Usage: install-system-deps.sh [run] [test] [bench]: what `make run` needs (always checked), and what the tests
# or the benches need besides. It honours the settings the project itself reads: PYTHON (the Makefile's),
# FARES_PG_BIN, FARES_MODEL_ENGINE and FARES_JDBC_DRIVER_JAR.
set -euo pipefail
purposes=" run $* "
for purpose in "$@"; do
  case "$purpose" in run|test|bench) ;; *) echo "usage: $0 [run] [test] [bench]" >&2; exit 2 ;; esac
done
missing=()
# `python -m venv` needs ensurepip, which Debian ships apart from Python.
"${PYTHON:-python3}" -c 'import ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
# Spark 4 needs Java 17 or later, and runs $JAVA_HOME/bin/java when JAVA_HOME is set (else the PATH's); `java
# -version` says "17.0.12" (or "1.8.0_402" before Java 9).
java_major() {
  "${JAVA_HOME:+$JAVA_HOME/bin/}java" -version 2>&1 \
    | awk -F'"' '/version/ {split($2, v, "."); print (v[1] == "1" ? v[2] : v[1]); exit}' 2>/dev/null || true
}
java_ok() { [ "$(java_major)" -ge 17 ] 2>/dev/null; }
java_ok || missing+=(openjdk-17-jre-headless)
# Where fare_assets.storing.postgres.find_bin_dir looks: FARES_PG_BIN, PATH, Debian's layout, a source build's.
{ [ -n "${FARES_PG_BIN:-}" ] && [ -x "$FARES_PG_BIN/initdb" ]; } || command -v pg_ctl >/dev/null 2>&1 \
  || ls /usr/lib/postgresql/*/bin/initdb /usr/local/pgsql/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
# As root the project starts PostgreSQL as the postgres user, through runuser.
[ "$(id -u)" -ne 0 ] || command -v runuser >/dev/null 2>&1 || missing+=(util-linux)
# PostgreSQL's JDBC driver: local Spark reads the warehouse with it (the MLlib engine's observations; the tests
# run that engine too).
if [[ "$purposes" == *" test "* || "${FARES_MODEL_ENGINE:-sklearn}" == spark ]]; then
  [ -f "${FARES_JDBC_DRIVER_JAR:-/usr/share/java/postgresql.jar}" ] || missing+=(libpostgresql-jdbc-java)
fi
# The fare page's browser tests drive this Chromium (playwright's own browser download is not used).
if [[ "$purposes" == *" test "* ]]; then
  [ -x /usr/bin/chromium ] || missing+=(chromium)
fi
# bench/fare_page_load.py's load generator (C, so the client takes little of the server's CPU).
if [[ "$purposes" == *" bench "* ]]; then
  command -v wrk >/dev/null 2>&1 || missing+=(wrk)
fi
if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" -ne 0 ]; then
  # A fresh image has no package lists yet: without the update, apt-get finds none of them.
  echo "missing Debian packages: ${missing[*]}; install them as root: apt-get update && apt-get install -y ${missing[*]}" >&2
  exit 1
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
# Installing Java 17 does not move a JAVA_HOME that points at an older one.
java_ok || { echo "Spark needs Java 17 or later; ${JAVA_HOME:+JAVA_HOME=$JAVA_HOME: }java is" \
  "$(version=$(java_major); echo "${version:+version $version}${version:-missing}"): point JAVA_HOME at Java 17+" \
  "(Debian: /usr/lib/jvm/java-17-openjdk-amd64) or unset it" >&2; exit 1; }
