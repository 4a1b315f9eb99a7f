#!/usr/bin/env bash
# Idempotent set-up: a project virtualenv in .venv with torch's CPU build installed first
# (so pip never fetches a multi-GB CUDA build), then the project and its dev tools.
set -euo pipefail
cd "$(dirname "$0")"
PY="${PYTHON:-$(command -v python3.11 || command -v python3)}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/pip install -q torch==2.13.0
.venv/bin/pip install -q -e ".[dev]"
