# Sourced by scripts/demo and scripts/test: make .venv and install exactly what requirements/lock.txt
# pins (made by scripts/lock), then appshell itself, editable. Idempotent and quiet: it installs again
# only when the lock, pyproject.toml or this file change. scripts/floors and scripts/canary use the
# same functions for their own environments (the lowest versions pyproject.toml allows; the newest).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PYTHON_BIN="${PYTHON:-python3}"
# The lock's own tool, uv (from the registry), at the version the lock pins.
UV_VERSION="$(sed -n 's/^uv==//p' "$ROOT/requirements/lock.txt")"
EXTRAS="--extra postgres --extra mysql --extra test"

# A virtual environment at $1 made by $2, with uv in it.
appshell_venv() {
    local venv="$1" python="$2"
    if [ ! -x "$venv/bin/python" ]; then
        echo "appshell: creating $venv ($("$python" --version 2>&1))" >&2
        "$python" -m venv "$venv"
    fi
    if [ "$("$venv/bin/uv" --version 2>/dev/null | cut -d' ' -f2)" != "$UV_VERSION" ]; then
        "$venv/bin/python" -m pip install -q --disable-pip-version-check "uv==$UV_VERSION" >"$venv/uv-install.log" 2>&1 \
            || { cat "$venv/uv-install.log" >&2; echo "appshell: error: installing uv into $venv failed — see the log above" >&2; exit 1; }
    fi
}

# Install exactly the requirements file $2 into the environment $1 (what is not in it is removed), then appshell.
appshell_sync() {
    local venv="$1" requirements="$2" log="$1/install.log"
    if ! { "$venv/bin/uv" pip sync --python "$venv/bin/python" "$requirements" \
           && "$venv/bin/uv" pip install --python "$venv/bin/python" --no-deps -e "$ROOT"; } >"$log" 2>&1; then
        cat "$log" >&2
        echo "appshell: error: installing $requirements into $venv failed — see the log above ($log)" >&2
        exit 1
    fi
}

appshell_venv "$VENV" "$PYTHON_BIN"
STAMP="$VENV/.appshell-installed"
WANT="$(cat "$ROOT/pyproject.toml" "$ROOT/requirements/lock.txt" "$ROOT/scripts/_setup.sh" | "$VENV/bin/python" -c 'import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())')"
if [ "$(cat "$STAMP" 2>/dev/null || true)" != "$WANT" ]; then
    echo "appshell: installing appshell and the locked dependencies into .venv (once)" >&2
    appshell_sync "$VENV" "$ROOT/requirements/lock.txt"
    echo "$WANT" >"$STAMP"
fi
