#!/usr/bin/env bash
# Build a Python 3.12 environment with the real XPCS tools (boost-corr, xpcs-viewer; they pull torch and Qt,
# several minutes) and xpcs-denoise from this checkout, then run scripts/check_real_tools.py in it, headless.
#   bash scripts/check_real_tools.sh [VENV=/tmp/peers] [extra args for check_real_tools.py]
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
venv="${1:-/tmp/peers}"
shift || true
if [ ! -x "$venv/bin/python" ]; then
    PYENV_VERSION="${PYENV_VERSION:-3.12.1}" python3.12 -m venv "$venv"
fi
if ! "$venv/bin/python" -c "import boost_corr, pyxpcsviewer" 2>/dev/null; then
    "$venv/bin/pip" install boost-corr xpcs-viewer
fi
"$venv/bin/pip" install -q -e "$here" pytest
export QT_QPA_PLATFORM=offscreen OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
exec "$venv/bin/python" "$here/scripts/check_real_tools.py" "$@"
