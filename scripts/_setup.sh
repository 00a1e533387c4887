# Sourced by scripts/demo and scripts/test: make .venv and install appshell into it.
# Idempotent and quiet: reinstalls only when pyproject.toml changes.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PYTHON_BIN="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
    echo "appshell: creating $VENV" >&2
    "$PYTHON_BIN" -m venv "$VENV"
fi
STAMP="$VENV/.appshell-installed"
WANT="$(cat "$ROOT/pyproject.toml" "$ROOT/scripts/_setup.sh" | "$VENV/bin/python" -c 'import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())')"
if [ "$(cat "$STAMP" 2>/dev/null || true)" != "$WANT" ]; then
    echo "appshell: installing appshell and its dependencies into .venv (once)" >&2
    LOG="$VENV/install.log"
    if ! "$VENV/bin/python" -m pip install --disable-pip-version-check -e "$ROOT[postgres,mysql,test]" >"$LOG" 2>&1; then
        cat "$LOG" >&2
        echo "appshell: error: installing into .venv failed — see the log above ($LOG)" >&2
        exit 1
    fi
    echo "$WANT" >"$STAMP"
fi
