#!/usr/bin/env bash
# The test command of the README. Uses the active Python environment.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python -m pytest -q "$@"
