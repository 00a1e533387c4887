"""Run in the project's own virtual environment, as ``bundle exec`` does (docs/operations.md).

Started by another interpreter while the project has ``.venv/`` (or
``APPSHELL_PYTHON`` names one), appshell re-executes itself there, keeping
argv, stdin and the exit code (exec replaces the process). This runs before
anything heavy is imported.
"""
# Over 350 lines: re-executing and the record of what ran before the session share the launch environment.

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from appshell.errors import ConfigError

__all__ = [
    "project_python",
    "same_environment",
    "reexec_target",
    "maybe_reexec",
    "install_command",
    "GUARD",
    "ISOLATED",
    "before_session",
    "isolate",
    "launch_environment",
    "influences",
    "interpreter_record",
    "preloaded_modules",
    "remember_launch_environment",
]

GUARD = "APPSHELL_REEXECUTED"  # set in the child: never re-exec twice (a loop guard)


def project_python(root: Path | None, environ: Mapping[str, str]) -> Path | None:
    if environ.get("APPSHELL_PYTHON"):
        return Path(environ["APPSHELL_PYTHON"])
    if root is not None and (root / ".venv" / "bin" / "python").exists():
        return root / ".venv" / "bin" / "python"
    return None


def _environment_of(python: Path) -> Path:
    """The virtual environment a python belongs to (its prefix), without running it."""
    venv = python.parent.parent
    return venv if (venv / "pyvenv.cfg").is_file() else python.parent


def same_environment(python: Path) -> bool:
    # Compare prefixes, not resolved executables: every venv's python is a symlink to one base.
    return _environment_of(python).resolve() == Path(sys.prefix).resolve()


def reexec_target(argv: Sequence[str], environ: Mapping[str, str], root: Path | None) -> Path | None:
    """The python to re-execute with, or None to stay in this process."""
    if "--no-reexec" in argv or environ.get(GUARD):
        return None
    python = project_python(root, environ)
    if python is None or same_environment(python):
        return None
    if not python.exists():
        raise ConfigError(f"APPSHELL_PYTHON={python} does not exist", "fix APPSHELL_PYTHON or pass --no-reexec")
    env_dir = _environment_of(python)
    if not any(env_dir.glob("lib/python*/site-packages/appshell-*.dist-info")):
        raise ConfigError(
            f"the project's environment {env_dir} does not have appshell installed",
            f"install it there: {install_command(python)} — or pass --no-reexec",
        )
    return python


def install_command(python: Path) -> str:
    """A command that installs this appshell into *python*'s environment.

    It runs this interpreter's pip with ``--python`` (pip ≥ 22.3), so it works
    in an environment made without pip too, and installs what runs now: the
    source checkout it comes from, else the same version from the index.
    """
    import shlex

    from appshell import __version__

    checkout = Path(__file__).resolve().parents[3]  # src/appshell/runtime/reexec.py
    pyproject = checkout / "pyproject.toml"
    source = (
        str(checkout)
        if pyproject.is_file() and 'name = "appshell"' in pyproject.read_text(encoding="utf-8")
        else f"appshell=={__version__}"
    )
    return shlex.join([sys.executable, "-m", "pip", "--python", str(python), "install", source])


def maybe_reexec(argv: Sequence[str], root: Path | None) -> None:
    remember_launch_environment()
    python = reexec_target(argv, os.environ, root)
    if python is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(str(python), [str(python), "-m", "appshell", *argv], {**os.environ, GUARD: "1"})


# -- what runs before the session (issue 22 item 10) -------------------------------------------
#
# Code can change a session before its first statement without being any statement: a
# `sitecustomize.py` or `usercustomize.py` on PYTHONPATH or in the user site, a `.pth` file, a
# PYTHONWARNINGS category naming a module, PYTHONPYCACHEPREFIX pointing at other byte code,
# PYTHONINSPECT, PYTHONHOME. Python runs all that before appshell's first line. session_start
# records what could have done it (before_session); where the profile locks the audit, the
# session re-executes itself isolated (`python -I`), so none of it runs in the session's process.

ISOLATED = "APPSHELL_ISOLATED"  # set in the isolated child: what its launcher neutralised (JSON)
# PYTHON* variables that change no code that runs: the isolated child would read them the same.
# (PYTHONSTARTUP is not read by the interpreter for `-m appshell`: appshell runs it itself,
# recorded with its text and sha256 — the -I child does so too.)
HARMLESS = frozenset(
    {"PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "PYTHONIOENCODING", "PYTHONUTF8", "PYTHONHASHSEED", "PYTHONSTARTUP"}
)
_OTHER_LOADERS = (
    "LD_PRELOAD",
    "LD_LIBRARY_PATH",
    "LD_AUDIT",
)  # not Python's, but they change what the interpreter runs too


def remember_launch_environment() -> None:
    """Keep the environment as it was when appshell started (the isolated child gets it, not what settings exported)."""
    from appshell.process import PROCESS

    PROCESS.launch_environ = dict(os.environ)  # each main() call: the in-process test harness runs many


def launch_environment() -> Mapping[str, str]:
    """The environment as appshell started (main() remembered it), else as it is now."""
    from appshell.process import PROCESS

    return os.environ if PROCESS.launch_environ is None else PROCESS.launch_environ


def _stdlib_test() -> tuple[Callable[[str], bool], tuple[str, ...]]:
    """Whether a file is the standard library's, and the site-packages folders (sysconfig read once per call)."""
    import sysconfig

    paths = sysconfig.get_paths()

    def dirs(*keys: str) -> tuple[str, ...]:
        found = {paths[k] for k in keys if k in paths}
        return tuple(sorted({d.rstrip("/") + "/" for d in found} | {os.path.realpath(d) + "/" for d in found}))

    # In a virtual environment platstdlib is the venv's lib/pythonX.Y, which holds site-packages too.
    stdlib, site_packages = dirs("stdlib", "platstdlib"), dirs("purelib", "platlib")
    return (lambda path: path.startswith(stdlib) and not path.startswith(site_packages)), site_packages


def preloaded_modules(limit: int = 50) -> dict[str, list[Any]]:
    """Modules in this process before the app boots that are neither the standard library's nor appshell's:
    ``outside`` the environment's site-packages (a `sitecustomize` from PYTHONPATH, the user site), each with
    its file's sha256; and ``packages``, the names of those from site-packages (what a `.pth` file imported,
    appshell's own dependencies), whose files the release installed."""
    from appshell.record.journal import file_sha256

    is_stdlib, site_packages = _stdlib_test()
    own = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + "/"  # the appshell package
    found = sorted(
        (
            (name, path)
            for name, module in list(sys.modules.items())
            if name != "__main__"
            and isinstance(path := getattr(module, "__file__", None), str)
            and not is_stdlib(path)
            and not os.path.abspath(path).startswith(own)
        ),
        key=lambda item: (item[0] not in ("sitecustomize", "usercustomize"), item[0]),
    )
    custom = ("sitecustomize", "usercustomize")  # listed with their hash wherever they are, site-packages included
    outside = [(name, path) for name, path in found if name in custom or not path.startswith(site_packages)]
    packages = sorted(
        {name.partition(".")[0] for name, path in found if name not in custom and path.startswith(site_packages)}
    )
    shown: list[Any] = [{"name": name, "path": path, "sha256": file_sha256(path)} for name, path in outside[:limit]]
    if len(outside) > limit:
        shown.append({"name": f"… {len(outside) - limit} more", "path": None})
    return {
        "outside": shown,
        "packages": packages[:limit] + ([f"… {len(packages) - limit} more"] if len(packages) > limit else []),
    }


def _library_path() -> str | None:
    """The shared libpython this interpreter runs (where its code is: the executable is a small stub)."""
    import sysconfig

    if not sysconfig.get_config_var("Py_ENABLE_SHARED"):
        return None
    name, folder = (
        sysconfig.get_config_var("INSTSONAME") or sysconfig.get_config_var("LDLIBRARY"),
        sysconfig.get_config_var("LIBDIR"),
    )
    path = os.path.join(folder or "", name or "")
    return path if name and os.path.isfile(path) else None


def _cached_sha256(path: str) -> tuple[str | None, bool]:
    """*path*'s sha256, cached per (path, size, mtime, inode) in the user's cache: hashing a 23 MB
    libpython costs ~30 ms a start. The cache is the operator's own file, so the record says when
    the hash came from it (``cached``)."""
    import json

    from appshell.record.journal import file_sha256

    try:
        st = os.stat(path)
    except OSError:
        return None, False
    stamp = [st.st_size, st.st_mtime_ns, st.st_ino]
    cache_dir = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "appshell"
    cache = cache_dir / "interpreters.json"
    try:
        entries = json.loads(cache.read_text(encoding="utf-8"))
        entry = entries.get(path) if isinstance(entries, dict) else None
        if isinstance(entry, dict) and entry.get("stamp") == stamp and isinstance(entry.get("sha256"), str):
            return entry["sha256"], True
    except (OSError, ValueError):
        entries = {}
    digest = file_sha256(path)
    if digest is not None:
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            fresh = cache_dir / f".interpreters.{os.getpid()}.tmp"
            fresh.write_text(
                json.dumps(
                    {**(entries if isinstance(entries, dict) else {}), path: {"stamp": stamp, "sha256": digest}}
                ),
                encoding="utf-8",
            )
            os.replace(fresh, cache)
        except OSError:
            pass  # no cache: hashed again next time
    return digest, False


def interpreter_record() -> dict[str, Any]:
    """The interpreter that runs the session: its path, its executable's sha256 and its libpython's."""
    from appshell.record.journal import file_sha256

    real = os.path.realpath(sys.executable)
    record: dict[str, Any] = {
        "path": sys.executable,
        "real_path": real,
        "sha256": file_sha256(real),
        "version": sys.version.split()[0],
    }
    library = _library_path()
    if library is not None:
        digest, cached = _cached_sha256(os.path.realpath(library))
        record["library"] = {"path": library, "sha256": digest, "cached": cached}
    return record


_FLAGS = (
    "isolated",
    "ignore_environment",
    "no_user_site",
    "no_site",
    "safe_path",
    "inspect",
    "interactive",
    "optimize",
    "dont_write_bytecode",
    "dev_mode",
    "verbose",
)


def influences(environ: Mapping[str, str]) -> list[str]:
    """What in this process's start could have run code or changed it before appshell: what an
    isolated interpreter would not do. Empty: nothing to neutralise."""
    found = [f"{name} is set" for name in sorted(environ) if name.startswith("PYTHON") and name not in HARMLESS]
    import site

    if site.ENABLE_USER_SITE and site.USER_SITE and site.USER_SITE in sys.path:
        found.append(f"the user site {site.USER_SITE} is on sys.path")
    is_stdlib, _ = _stdlib_test()
    for name in ("sitecustomize", "usercustomize"):
        module = sys.modules.get(name)
        path = getattr(module, "__file__", None)
        if isinstance(path, str) and not is_stdlib(path):
            found.append(f"{name} was imported from {path}")
    return found


def _host_modules() -> dict[str, Any]:
    listed = preloaded_modules(limit=10**6)
    custom = [m for m in listed["outside"] if m["name"] in ("sitecustomize", "usercustomize")]
    return {"outside": custom, "packages": [], "host": len(listed["outside"]) - len(custom) + len(listed["packages"])}


def before_session(environ: Mapping[str, str], *, standalone: bool = True) -> dict[str, Any]:
    """session_start's account of what could change the session before its first statement. Called as a
    library (*standalone* false: main() in another program, as the test harness runs it), the modules
    loaded before are that program's: only a sitecustomize/usercustomize is listed, the rest counted."""
    from appshell.config.redact import MASK, is_secret_name

    python_env = {
        k: (MASK if is_secret_name(k) else v)
        for k, v in sorted(environ.items())
        if k.startswith("PYTHON") or k in _OTHER_LOADERS
    }
    record: dict[str, Any] = {
        "python_env": python_env,
        "appshell_env": sorted(k for k in environ if k.startswith("APPSHELL_")),
        "sys_path": list(sys.path),
        "interpreter": interpreter_record(),
        "python_flags": {name: getattr(sys.flags, name) for name in _FLAGS},
        "preloaded": preloaded_modules() if standalone else _host_modules(),
    }
    launcher = environ.get(ISOLATED)
    if launcher is not None and sys.flags.isolated:
        import json

        try:
            record["isolated"] = {"neutralised": json.loads(launcher)}  # what the launcher had; it did not run here
        except ValueError:
            record["isolated"] = {"neutralised": [launcher]}
    return record


def isolate(
    locked: bool, profile: str, argv: Sequence[str], stdin_program: str | None, reason: str | None, *, standalone: bool
) -> list[str]:
    """Under a profile that locks the audit, run the session in an isolated interpreter (``-I``):
    no PYTHON* variable, no user site, no sitecustomize from PYTHONPATH runs in it. Re-executes
    (exec: same pid, argv, exit code) and does not return when there is something to neutralise
    and this is the console script; returns what it could not neutralise otherwise (in-process:
    recorded, not neutralised). In the isolated child, PYTHONPATH's folders go to the *end* of
    sys.path: the app's modules on them still import, nothing on them runs at start-up or
    shadows the standard library or an installed package."""
    if not locked:
        return []
    if sys.flags.isolated:
        if os.environ.get(ISOLATED) is not None:
            for folder in os.environ.get("PYTHONPATH", "").split(os.pathsep):
                if folder and os.path.isdir(folder) and folder not in sys.path:
                    sys.path.append(folder)
        return []
    found = influences(launch_environment())
    if not found or not standalone:
        return found
    import json

    env = {**launch_environment(), GUARD: "1", ISOLATED: json.dumps(found)}
    if reason:
        env["APPSHELL_REASON"] = reason  # asked at the terminal already: not asked twice (a --reason flag still wins)
    if stdin_program is not None:
        _stdin_from(stdin_program)  # read already: the child reads the very same program from its stdin
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, [sys.executable, *_harmless_flags(), "-I", "-m", "appshell", *argv], env)
    except OSError as exc:
        raise ConfigError(
            f"profile '{profile}' locks the audit and {found[0]}, but appshell could not re-execute isolated ({exc})",
            f"unset what is listed ({'; '.join(found)}) and run appshell again",
        ) from None
    raise AssertionError("unreachable")  # pragma: no cover


def _harmless_flags() -> list[str]:
    """The HARMLESS variables' effects, as flags: -I makes the child ignore the variables themselves."""
    flags = ["-B"] if sys.flags.dont_write_bytecode else []
    if os.environ.get("PYTHONUNBUFFERED"):
        flags.append("-u")
    if sys.flags.utf8_mode:
        flags += ["-X", "utf8"]
    return flags


def _stdin_from(text: str) -> None:
    """Make fd 0 a file holding *text* (an anonymous memory file), for the process about to be exec'd."""
    data = text.encode("utf-8", "surrogateescape")
    try:
        fd = os.memfd_create("appshell-stdin")
    except (AttributeError, OSError):
        import tempfile

        fd, name = tempfile.mkstemp(prefix="appshell-stdin-")
        os.unlink(name)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.lseek(fd, 0, os.SEEK_SET)
    os.dup2(fd, 0)
    os.close(fd)
