"""Protected hosts (``protect.hosts``): sockets to them are refused, in one line and recorded, while protected
data is locked; unlock(reason) opens them. Real sockets, to a listening socket on 127.0.0.1 only."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.apps import library_on
from support.audit import audit_records
from support.harness import run

from appshell.config.profiles import load_profile
from appshell.console.protect import Protection, Rules, host_patterns
from appshell.console.protect_hosts import _protected
from appshell.errors import ConfigError

pytestmark = pytest.mark.in_process  # run() calls main() in this process (tests/support/harness.py)

PRODUCTION = ["--profile", "production", "--reason", "INC-9 hosts check"]


@pytest.fixture
def listening() -> Iterator[int]:
    """A socket listening on 127.0.0.1 (a free port): what the session tries to reach."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield int(server.getsockname()[1])


def _protect_hosts(root: Path, *hosts: str) -> None:
    profile = root / "profiles" / "production.toml"
    listed = ", ".join(f'"{h}"' for h in hosts)
    profile.write_text(profile.read_text().replace("[protect]\n", f"[protect]\nhosts = [{listed}]\n"))


def _connect(port: int, host: str = "127.0.0.1") -> str:
    return f"import socket\nsocket.create_connection(({host!r}, {port}), timeout=5).close()\nprint('connected')"


PATTERNS = [
    ("search.internal:9200", ("search.internal", "9200")),
    ("api.stripe.com", ("api.stripe.com", None)),
    ("https://API.Stripe.com/v1/charges", ("api.stripe.com", None)),  # a URL: its host; a socket sees no path
    ("http://search.internal:9200/_search", ("search.internal", "9200")),
    ("*.internal:92??", ("*.internal", "92??")),
    ("[::1]:5000", ("::1", "5000")),
    ("10.0.0.*", ("10.0.0.*", None)),
]


@pytest.mark.parametrize("entry, parsed", PATTERNS)
def test_host_entries_are_read_as_host_and_port(entry: str, parsed: tuple[str, str | None]) -> None:
    assert host_patterns([entry]) == ((*parsed, entry),)


MATCHES = [
    ("search.internal", "9200", "search.internal:9200"),
    ("SEARCH.internal", "9200", "search.internal:9200"),  # host names compare case-blind
    ("search.internal", "9300", None),
    (
        "search.internal",
        None,
        "search.internal:9200",
    ),  # a lookup without a port: the connect after it would see an address
    ("api.stripe.com", "443", "api.stripe.com"),
    ("files.stripe.com", "443", "*.stripe.com"),
    ("stripe.com", "443", None),
    ("10.0.0.7", "80", "10.0.0.*"),
    ("::1", "5000", "[::1]:5000"),
]


@pytest.mark.parametrize("host, port, entry", MATCHES)
def test_which_connections_a_profile_protects(host: str, port: str | None, entry: str | None) -> None:
    rules = Rules(True, hosts=("search.internal:9200", "api.stripe.com", "*.stripe.com", "10.0.0.*", "[::1]:5000"))
    assert _protected(Protection(rules), host, port) == entry


@pytest.mark.parametrize(
    "text, words",
    [
        (
            '[protect]\nhosts = "api.stripe.com"\n',
            "bad value 'api.stripe.com' for 'protect.hosts' — use a list of hosts",
        ),
        ('[protect]\nhosts = ["api stripe"]\n', "bad value ['api stripe'] for 'protect.hosts'"),
        ('[protect]\nhosts = ["https://user@api.stripe.com"]\n', "for 'protect.hosts'"),
        ('[protect]\nhosts = [":9200"]\n', "for 'protect.hosts'"),
        ('[protect]\nhost = ["a"]\n', "unknown key 'protect.host' (did you mean 'protect.hosts'?)"),
    ],
)
def test_a_bad_hosts_list_is_an_error_naming_file_key_and_allowed_values(tmp_path: Path, text: str, words: str) -> None:
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "mine.toml").write_text(text)
    with pytest.raises(ConfigError) as raised:
        load_profile("mine", tmp_path)
    assert words in raised.value.format()


def test_the_shipped_profiles_protect_no_host() -> None:
    assert load_profile("production", None).protect.hosts == ()
    assert load_profile("development", None).protect.hosts == ()


def test_a_connection_to_a_protected_host_is_refused_in_one_line_and_recorded(shop: Path, listening: int) -> None:
    _protect_hosts(shop, f"127.0.0.1:{listening}")
    result = run([*PRODUCTION, "-c", _connect(listening)], cwd=shop)
    assert result.exit_code != 0
    assert "connected" not in result.stdout
    line = (
        f"appshell: refused: 127.0.0.1:{listening} is a protected host (protect.hosts '127.0.0.1:{listening}') — "
        'unlock("reason") first, which is recorded, or open the session with a profile that does not list it'
    )
    assert line in result.stderr.splitlines()
    assert "Traceback" not in result.stderr
    refused = [r for r in audit_records(shop / ".appshell" / "audit.jsonl") if r.get("kind") == "protected_host"]
    assert len(refused) == 1
    assert refused[0]["host"] == f"127.0.0.1:{listening}" and refused[0]["pattern"] == f"127.0.0.1:{listening}"


def test_a_name_is_refused_at_its_lookup_whatever_asks_for_it(shop: Path, listening: int) -> None:
    _protect_hosts(shop, f"http://localhost:{listening}/api")
    code = f"import urllib.request\nurllib.request.urlopen('http://localhost:{listening}/', timeout=5)"
    result = run([*PRODUCTION, "-c", code], cwd=shop)
    assert (
        f"appshell: refused: localhost:{listening} is a protected host (protect.hosts 'http://localhost:{listening}/api')"
        in result.stderr
    )
    assert [
        r["source"] for r in audit_records(shop / ".appshell" / "audit.jsonl") if r.get("kind") == "protected_host"
    ] == [f"# refused: look up localhost:{listening}"]


def test_other_hosts_and_ports_are_not_refused(shop: Path, listening: int) -> None:
    _protect_hosts(shop, "search.internal", f"127.0.0.1:{listening + 1 if listening < 65535 else listening - 1}")
    result = run([*PRODUCTION, "-c", _connect(listening)], cwd=shop)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "connected"


def test_unlock_opens_the_protected_hosts_and_lock_closes_them(shop: Path, listening: int) -> None:
    _protect_hosts(shop, "127.0.0.1")
    code = "\n".join(
        [
            "unlock('INC-9: the search cluster has to be reindexed')",
            _connect(listening),
            "lock()",
            _connect(listening),
        ]
    )
    result = run([*PRODUCTION, "-c", code], cwd=shop)
    assert result.stdout.splitlines() == ["connected"]
    assert "unlocked customers.email, customers.name, the protected hosts until lock()" in result.stderr
    assert f"appshell: refused: 127.0.0.1:{listening} is a protected host" in result.stderr
    records = audit_records(shop / ".appshell" / "audit.jsonl")
    assert [r["hosts"] for r in records if r.get("kind") == "sensitive_access"] == [["127.0.0.1"]]
    assert len([r for r in records if r.get("kind") == "protected_host"]) == 1


def test_unlocking_one_column_leaves_the_hosts_protected(shop: Path, listening: int) -> None:
    _protect_hosts(shop, "127.0.0.1")
    code = "unlock('INC-9: check one customer e-mail', 'customers.email')\n" + _connect(listening)
    result = run([*PRODUCTION, "-c", code], cwd=shop)
    assert "connected" not in result.stdout
    assert f"appshell: refused: 127.0.0.1:{listening} is a protected host" in result.stderr


def test_the_development_profile_refuses_nothing(shop: Path, listening: int) -> None:
    (shop / "profiles" / "development.toml").write_text(
        '[protect]\nhosts = ["127.0.0.1"]\n'
    )  # protect.enabled stays off
    result = run(["--profile", "development", "-c", _connect(listening)], cwd=shop)
    assert result.stdout.strip() == "connected", result.output


def test_the_database_on_a_protected_host_is_still_reached_by_the_app(
    app_dir: Callable[[str], Path], mariadb_url: str, listening: int
) -> None:
    """pymysql's connects are Python sockets to 127.0.0.1 as well:
    SQLAlchemy's are let through, the operator's refused."""
    root, env = library_on(app_dir, mariadb_url)
    (root / "profiles").mkdir(exist_ok=True)
    (root / "profiles" / "hosts.toml").write_text('[protect]\nenabled = true\nhosts = ["127.0.0.1", "localhost"]\n')
    code = "print(count(Book))\n" + _connect(listening)
    result = run(["--profile", "hosts", "-c", code], cwd=root, env=env)
    assert result.stdout.strip() == "2", result.output
    assert f"appshell: refused: 127.0.0.1:{listening} is a protected host (protect.hosts '127.0.0.1')" in result.stderr


def test_refused_in_the_real_console_script_too(shop: Path, listening: int) -> None:
    """The recorder and the session as two processes (docs/design.md):
    the hook is the session's, the record the recorder's."""
    _protect_hosts(shop, f"localhost:{listening}", "127.0.0.1")
    code = f"import http.client\nhttp.client.HTTPConnection('localhost', {listening}, timeout=5).request('GET', '/')"
    result = run([*PRODUCTION, "-c", code], cwd=shop, process=True)
    assert result.exit_code != 0
    assert (
        f"appshell: refused: localhost:{listening} is a protected host (protect.hosts 'localhost:{listening}')"
        in result.stderr
    )
    assert [
        r["host"] for r in audit_records(shop / ".appshell" / "audit.jsonl") if r.get("kind") == "protected_host"
    ] == [f"localhost:{listening}"]


def test_appshell_protected_lists_the_protected_hosts(shop: Path) -> None:
    _protect_hosts(shop, "search.internal:9200", "*.stripe.com")
    result = run(["protected", "--profile", "production"], cwd=shop)
    assert result.exit_code == 0, result.output
    assert "protected hosts (refused until unlock(reason)): search.internal:9200, *.stripe.com" in result.stdout
    as_json = run(["protected", "--profile", "production", "--json"], cwd=shop)
    assert '"hosts": ["search.internal:9200", "*.stripe.com"]' in as_json.stdout


@pytest.mark.subprocess
@pytest.mark.parametrize("shell", ["ipython", "ptpython", "python"])
def test_refused_in_one_line_at_every_shells_prompt_and_the_shell_goes_on(
    shop: Path, listening: int, shell: str
) -> None:
    from support.terminal import leave, spawn_shell

    _protect_hosts(shop, "127.0.0.1")
    child = spawn_shell(shop, "--shell", shell, "-q", *PRODUCTION)
    child.expect(r"\[shop PRODUCTION\]")
    child.sendline(f"import socket; socket.create_connection(('127.0.0.1', {listening}), timeout=5)")
    child.expect(f"appshell: refused: 127.0.0.1:{listening} is a protected host \\(protect.hosts '127.0.0.1'\\)")
    child.expect(r"\[shop PRODUCTION\]")
    assert "Traceback" not in child.before
    child.sendline("print('still', 'here')")
    child.expect("still here")
    child.expect(r"\[shop PRODUCTION\]")
    leave(child)
    assert len([r for r in audit_records(shop / ".appshell" / "audit.jsonl") if r.get("kind") == "protected_host"]) == 1


@pytest.mark.parametrize(
    "code",
    [
        # a thread the operator starts: its frames end in threading's, the operator's function among them
        "import socket, threading\nfound = []\n"
        "def go():\n    try:\n        socket.create_connection(('127.0.0.1', {port}), timeout=5)\n"
        "    except Exception as exc:\n        found.append(exc)\n"
        "t = threading.Thread(target=go); t.start(); t.join(); print(type(found[0]).__name__)",
        # asyncio: the name is looked up in the loop's executor
        # thread (no caller vouches for it), the connect in the loop
        "import asyncio\nasync def go():\n    try:\n"
        "        await asyncio.open_connection('localhost', {port})\n    except Exception as exc:\n"
        "        return type(exc).__name__\n"
        "loop = asyncio.new_event_loop(); print(loop.run_until_complete(go())); loop.close()",
    ],
)
@pytest.mark.parametrize("process", [False, True], ids=["in-process", "console-script"])
def test_threads_and_event_loops_are_refused_too(shop: Path, listening: int, code: str, process: bool) -> None:
    _protect_hosts(shop, "127.0.0.1", "localhost")
    result = run([*PRODUCTION, "-c", code.format(port=listening)], cwd=shop, process=process)
    assert result.stdout.strip() == "HostRefused", result.output
    assert [
        r for r in audit_records(shop / ".appshell" / "audit.jsonl") if r.get("kind") == "protected_host"
    ]  # recorded from that thread too


def test_datagrams_and_connect_ex_are_refused_too(shop: Path, listening: int) -> None:
    _protect_hosts(shop, "127.0.0.1")
    code = "\n".join(
        [
            "import socket",
            "udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)",
            f"for send in (lambda: udp.sendto(b'x', ('127.0.0.1', {listening})), "
            f"lambda: udp.sendmsg([b'x'], [], 0, ('127.0.0.1', {listening})),",
            f"             lambda: socket.socket().connect_ex(('127.0.0.1', {listening}))):",
            "    try:\n        send()\n    except Exception as exc:\n        print(type(exc).__name__)",
        ]
    )
    result = run([*PRODUCTION, "-c", code], cwd=shop)
    assert result.stdout.split() == ["HostRefused"] * 3, result.output
    sources = [
        r["source"] for r in audit_records(shop / ".appshell" / "audit.jsonl") if r.get("kind") == "protected_host"
    ]
    assert sources == [f"# refused: send to 127.0.0.1:{listening}"] * 2 + [
        f"# refused: connect to 127.0.0.1:{listening}"
    ]


def test_the_hook_is_quiet_once_the_session_is_over(listening: int) -> None:
    """Audit hooks cannot be removed: after its session (deactivated, or its journal closed) it refuses nothing."""
    from appshell.console import protect
    from appshell.console.protect_hosts import HostRefused, guard_hosts

    class Journal:
        closed = False

        def nested(self, source: str, kind: str, **extra: object) -> None:
            self.recorded = (source, kind, extra)

    journal = Journal()
    protection = Protection(Rules(True, hosts=("127.0.0.1",)))
    protect.activate(protection)
    try:
        guard_hosts(protection, journal)  # type: ignore[arg-type]
        with pytest.raises(HostRefused, match=f"127.0.0.1:{listening} is a protected host"):
            socket.create_connection(("127.0.0.1", listening), timeout=5)
        assert journal.recorded == (
            f"# refused: connect to 127.0.0.1:{listening}",
            "protected_host",
            {"host": f"127.0.0.1:{listening}", "pattern": "127.0.0.1"},
        )
        journal.closed = True
        socket.create_connection(("127.0.0.1", listening), timeout=5).close()
        journal.closed = False
    finally:
        protect.deactivate()
    socket.create_connection(("127.0.0.1", listening), timeout=5).close()


def test_doctor_names_the_protected_hosts_and_what_the_guard_is(shop: Path) -> None:
    import json

    _protect_hosts(shop, "search.internal:9200")
    result = run([*PRODUCTION, "doctor", "--json"], cwd=shop)
    checks = {c["check"]: (c["status"], c["detail"]) for c in json.loads(result.stdout)["checks"]}
    status, detail = checks["protected hosts"]
    assert status == "ok" and detail.startswith(
        "search.internal:9200: sockets refused until unlock(reason) — an in-process guard"
    )
    assert "protected hosts" not in {
        c["check"] for c in json.loads(run(["doctor", "--json"], cwd=shop).stdout)["checks"]
    }
