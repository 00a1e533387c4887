"""``unlock(reason)`` and ``lock()``: protected values shown, with a reason that is recorded, and masked again;
where the profile names a role that may read them, the session switches to it for the unlock."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

from appshell.console.protect import active
from appshell.console.protect_hosts import guard_hosts
from appshell.errors import UnlockRefused

if TYPE_CHECKING:
    from appshell.record.journal import Journal

__all__ = ["UnlockRefused", "MIN_REASON", "check_reason", "RoleSwitch", "role_switch", "make_unlock"]


MIN_REASON = 12  # characters; and at least two words


# -- unlocking --------------------------------------------------------------------


def check_reason(reason: Any) -> str:
    """The reason, tidied; refused where an auditor could not read why."""
    text = " ".join(str(reason or "").split())
    if len(text) < MIN_REASON or len(text.split()) < 2:
        raise UnlockRefused(
            "unlock() needs a reason of a few words, which is recorded: "
            'unlock("INC-42: customer asked for a copy of their data")'
        )
    return text


def _dotted(column: Any) -> str:
    """``"customers.email"``, ``Customer.email`` → the pattern unlock() opens."""
    if isinstance(column, str):
        return column
    expr = getattr(column, "expression", column)
    protection = active()
    dotted = protection.column(expr) if protection is not None else None
    if dotted is None:
        raise UnlockRefused(f"unlock(reason, …): {column!r} is not a protected column — see appshell protected")
    return dotted


def _where(params: Mapping[str, Any]) -> tuple[str, str]:
    host = str(params.get("host") or "localhost").replace("127.0.0.1", "localhost")
    return host, str(params.get("dbname") or params.get("database") or params.get("db") or "")


class RoleSwitch:
    """unlock()'s way to a role that can read the protected columns (``protect.unlock_url_env``), where the
    session's own role cannot (``protect.column_grants``): while it is on, every new connection to that
    database logs in as that role; switching rolls the session back and closes the pooled connections."""

    def __init__(self, url: str, ctx: Any) -> None:
        from sqlalchemy import make_url

        from appshell.safety.engines import on_every_engine

        self.role = make_url(url)
        self.ctx = ctx
        self.on = False
        on_every_engine("do_connect", self._do_connect)  # after the read-only role's: this one wins while on

    def _do_connect(self, dialect: Any, conn_rec: Any, cargs: list[Any], cparams: dict[str, Any]) -> None:
        if not self.on or dialect.name != self.role.get_backend_name():
            return
        _, wanted = dialect.create_connect_args(self.role.set(drivername=f"{dialect.name}+{dialect.driver}"))
        if _where(cparams) != _where(wanted):
            return  # another database
        for key in ("user", "password", "passwd"):
            cparams.pop(key, None)
        cparams.update({k: v for k, v in wanted.items() if k in ("user", "password", "passwd")})

    def check(self, sandbox: bool) -> None:
        """Refuse a switch that would lose something: a sandbox's transaction, changes not committed."""
        session = self.ctx.session
        if sandbox:
            raise UnlockRefused(
                "unlock() logs in as another role, and the sandbox's transaction lives on this connection: "
                "open a session without --sandbox to unlock"
            )
        if self.ctx.async_engine is not None:
            raise UnlockRefused(
                "unlock() cannot switch an async app's connections to another role yet: open a session as that role"
            )
        if session.new or session.dirty or session.deleted:
            raise UnlockRefused(
                "the session has changes not committed, and unlock() "
                "starts a new connection: commit() or rollback() first"
            )

    def switch(self, on: bool) -> None:
        self.ctx.session.rollback()  # its objects expire: read again as the role now in use
        self.on = on
        self.ctx.engine.dispose()  # pooled connections logged in as the other role are closed


def role_switch(settings: Any, ctx: Any) -> RoleSwitch | None:
    """The role switch, where the profile has column grants and names an unlock role; its variable unset is an error."""
    import os

    from appshell.errors import ConfigError

    section = settings.profile.protect
    if not (section.enabled and section.column_grants and section.unlock_url_env):
        return None
    url = os.environ.get(section.unlock_url_env, "")
    if not url:
        raise ConfigError(
            f"profile '{settings.profile.name}' sets "
            f'protect.unlock_url_env = "{section.unlock_url_env}", but it is not set',
            f"set {section.unlock_url_env} to the URL of a role that can read the protected columns",
        )
    return RoleSwitch(url, ctx)


def make_unlock(
    journal: Journal, profile: str, switch: RoleSwitch | None = None, sandbox: bool = False
) -> dict[str, Callable[..., None]]:
    """The namespace's ``unlock`` and ``lock``, recording to *journal*; *switch*: the role unlock() logs in as.

    The session's protected hosts are guarded from here on too: ``unlock(reason)`` opens them, and their
    refusals are recorded to the same *journal*."""
    protection = active()
    if protection is not None:
        guard_hosts(protection, journal)

    def unlock(reason: str | None = None, *columns: Any) -> None:
        """Show protected values until lock(), with a reason that is recorded: unlock("INC-42: why")."""
        protection = active()
        if protection is None:
            print(
                f"appshell: nothing is masked in this session (profile {profile}: protect.enabled is off)",
                file=sys.stderr,
            )
            return
        if protection.rules.column_grants and switch is None:
            raise UnlockRefused(
                "this session's database role may not read the protected "
                f"columns (profile {profile}: protect.column_grants): "
                "unlock() cannot show them — name a role that can in protect.unlock_url_env"
            )
        if switch is not None and not switch.on:
            switch.check(sandbox)
        if reason is None and sys.stdin.isatty():
            reason = input("Why do you need to see protected data? ")
        text = check_reason(reason)
        patterns = [_dotted(c) for c in columns]
        everything = protection.everything()
        opened = (
            [d for d in everything if any(fnmatchcase(d.lower(), p.lower()) for p in patterns)]
            if patterns
            else everything
        )
        if patterns and not opened:
            raise UnlockRefused(
                f"unlock(reason, {', '.join(map(repr, patterns))}): no "
                f"protected column matches — these are: {', '.join(everything)}"
            )
        import getpass

        # Recorded first: where the audit cannot record it, nothing is unlocked.
        role: dict[str, Any] = {"role": switch.role.username} if switch is not None else {}
        if protection.hosts and not patterns:
            role["hosts"] = [entry for *_, entry in protection.hosts]
        journal.nested(
            f"# unlock: {text}", kind="sensitive_access", reason=text, columns=opened, user=getpass.getuser(), **role
        )
        if switch is not None and not switch.on:
            switch.switch(True)
            protection.switched = True
        protection.unlock(patterns)
        as_role = f" (the database role {switch.role.username})" if switch is not None else ""
        hosts = ["the protected hosts"] if protection.hosts and not patterns else []
        print(
            f"appshell: unlocked {', '.join(opened + hosts) or 'nothing'}{as_role} "
            "until lock() or the session's end — recorded as sensitive access",
            file=sys.stderr,
        )

    def lock() -> None:
        """Mask protected values again."""
        protection = active()
        if protection is None:
            return
        if switch is not None and switch.on:
            switch.check(sandbox=False)
        if protection.unlocked_all or protection.unlocked:
            journal.nested("# lock", kind="sensitive_access_end")
        if switch is not None and switch.on:
            switch.switch(False)  # back to the session's own role
            protection.switched = False
        protection.lock()
        print("appshell: protected values are masked again", file=sys.stderr)

    return {"unlock": unlock, "lock": lock}
