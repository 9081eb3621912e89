#!/usr/bin/env bash
# The test command: starts whatever the tests need, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo test --all-features "$@"
