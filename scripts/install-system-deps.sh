#!/bin/sh
# Debian packages the test suite and the benchmarks need (chromium for the browser tests, wrk
# for bench/webhook.py's load, postgresql for the store tests on PostgreSQL: tests/pg.py starts
# a throw-away cluster from /usr/lib/postgresql/*/bin as the `postgres` user the package
# creates); run by `make test` and `make bench` when they are missing.
set -e
SUDO=""
[ "$(id -u)" = "0" ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium wrk postgresql >/dev/null
