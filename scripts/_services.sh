# Sourced by scripts/test, scripts/floors and scripts/canary: the services the suite needs, started or
# installed where they are missing (PostgreSQL and MariaDB are required; under CI=true a skipped
# PostgreSQL or MariaDB test is a failure).
# PostgreSQL: required. Start the local cluster if it is down.
export APPSHELL_TEST_PG_URL="${APPSHELL_TEST_PG_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/test}"
if command -v pg_isready >/dev/null && ! pg_isready -q -h 127.0.0.1 -p 5432; then
    if [ -d /etc/postgresql ]; then
        echo "appshell: starting PostgreSQL" >&2
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
        for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
    fi
fi

# MariaDB: required too. Start the local server if it is down (the machine's own command for it).
if command -v mariadb-admin >/dev/null && ! mariadb-admin -h 127.0.0.1 -P 3306 -u root ping >/dev/null 2>&1; then
    if [ -x /usr/sbin/mariadbd ]; then
        echo "appshell: starting MariaDB" >&2
        start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || true
        for _ in $(seq 1 30); do mariadb-admin -h 127.0.0.1 -P 3306 -u root ping >/dev/null 2>&1 && break; sleep 1; done
    fi
fi

# OpenSSH server: the ssh tests start their own sshd on a high port.
if [ ! -x /usr/sbin/sshd ] && command -v apt-get >/dev/null; then
    echo "appshell: installing openssh-server (for the ssh tests)" >&2
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo -n"
    APT_LOG="$VENV/apt.log"
    { $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends openssh-server \
      || { $SUDO apt-get update -q && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends openssh-server; }; } \
      >"$APT_LOG" 2>&1 || echo "appshell: warning: could not install openssh-server (see $APT_LOG)" >&2
fi

# Chromium: tests/test_review_browser.py drives Debian's browser with Playwright (no `playwright install`).
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null; then
    echo "appshell: installing chromium (for the review page's browser test)" >&2
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo -n"
    APT_LOG="$VENV/apt-chromium.log"
    { $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium \
      || { $SUDO apt-get update -q && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }; } \
      >"$APT_LOG" 2>&1 || echo "appshell: warning: could not install chromium (see $APT_LOG)" >&2
fi
