"""Bearer tokens with roles, checked at the edge of the service by an ASGI middleware.

Callers present `Authorization: Bearer <token>`. Tokens are kept only as SHA-256 hashes
(in a git-ignored TOML file or the `DIVERSION_TOKENS` variable); each names its caller, the
roles it holds and, optionally, when it expires (`expires_at`). `ROUTE_ROLES` says which
role each path needs. Without tokens the service refuses to start unless demo mode is
switched on explicitly. A tokens file is re-read when it changes (checked at most every
`DIVERSION_TOKENS_RELOAD_SECONDS`, default 2), so a revoked token stops working within
seconds, without a restart. See docs/security.md.

Issue (printed once, only its hash is kept), list and revoke tokens:
    python -m serving.auth issue --name customs-ices --roles scorer --expires 90d --file secrets/tokens.toml
    python -m serving.auth list --file secrets/tokens.toml
    python -m serving.auth revoke --name customs-ices --file secrets/tokens.toml
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import tempfile
import threading
import time
import tomllib
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

#: `monitor` reads /metrics (Prometheus scrapers) and nothing else; `risk_officer` manages
#: targeting rules and watchlists.
ROLES = ("scorer", "analyst", "auditor", "monitor", "risk_officer")

#: Role each path needs; None: any authenticated caller. Keys ending in "/" cover every path below.
#: A path that is neither here nor open is refused (403) until a policy is added for it.
ROUTE_ROLES: dict[str, str | None] = {
    "/score": "scorer",
    "/history/declarations": "analyst",
    "/history/seizures": "analyst",
    "/outcomes": "analyst",
    "/model": None,
    "/schema.json": None,  # BentoML's API schema; bentoml.SyncHTTPClient fetches it (with its token) on start
    "/audit": "auditor",
    "/audit/": "auditor",
    # Request counts by route and status would tell anyone which declarations auditors looked up.
    "/metrics": "monitor",
    "/rules": "risk_officer",
    "/rules/": "risk_officer",
    "/watchlists": "risk_officer",
    "/watchlists/": "risk_officer",
}
#: Paths served without a token: probes, the OpenAPI document and docs page.
OPEN_PATHS = frozenset({"/livez", "/readyz", "/healthz", "/docs.json", "/"})
OPEN_PREFIXES = ("/static_content/",)

TOKENS_FILE_ENV = "DIVERSION_TOKENS_FILE"
TOKENS_ENV = "DIVERSION_TOKENS"
DEMO_MODE_ENV = "DIVERSION_DEMO_MODE"
RELOAD_SECONDS_ENV = "DIVERSION_TOKENS_RELOAD_SECONDS"
#: Default seconds between checks of the tokens file for changes (one `stat` per check).
DEFAULT_RELOAD_SECONDS = 2.0

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


class AuthConfigError(RuntimeError):
    """Tokens are missing or malformed; the message says where and how to fix it."""


@dataclass(frozen=True)
class Caller:
    """An authenticated caller: the name recorded in the audit trail and the roles it holds."""

    name: str
    roles: frozenset[str]


@dataclass(frozen=True)
class _Entry:
    caller: Caller
    digest: bytes
    expires_at: dt.datetime | None = None  # aware, UTC

    def expired(self, now: dt.datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at


def hash_token(token: str) -> str:
    """SHA-256 (hex) of a token: the only form in which tokens are stored."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A fresh random token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def _expiry(value: object, where: str) -> dt.datetime | None:
    """`expires_at` as an aware UTC datetime: a TOML date-time or ISO 8601 text; no offset means UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            value = None
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = dt.datetime.combine(value, dt.time())
    if not isinstance(value, dt.datetime):
        raise AuthConfigError(f"{where}: expires_at must be an ISO 8601 date-time, e.g. 2027-03-01T00:00:00Z")
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _entry(name: object, roles: object, sha256: object, where: str, expires_at: object = None) -> _Entry:
    if not isinstance(name, str) or not _NAME.match(name):
        raise AuthConfigError(
            f"{where}: name {name!r} must be 1-128 characters of letters, digits, '.', '_', '@', '-'"
        )
    if not isinstance(roles, list | tuple) or not roles or not all(isinstance(r, str) for r in roles):
        raise AuthConfigError(f"{where} ({name}): roles must be a non-empty list drawn from {list(ROLES)}")
    unknown = sorted(set(roles) - set(ROLES))
    if unknown:
        raise AuthConfigError(f"{where} ({name}): unknown role(s) {unknown}; known roles are {list(ROLES)}")
    if not isinstance(sha256, str) or not _SHA256_HEX.match(sha256):
        raise AuthConfigError(
            f"{where} ({name}): sha256 must be 64 lowercase hex characters (the token's hash, never the token)"
        )
    return _Entry(
        Caller(name, frozenset(roles)), bytes.fromhex(sha256), _expiry(expires_at, f"{where} ({name})")
    )


class TokenRegistry:
    """Known token hashes and the caller each one stands for."""

    def __init__(
        self,
        entries: list[_Entry],
        source: str = "tokens",
        *,
        path: Path | None = None,
        reload_seconds: float = DEFAULT_RELOAD_SECONDS,
        allow_empty: bool = False,
    ) -> None:
        if not entries and not allow_empty:
            raise AuthConfigError(f"{source}: no tokens; issue one with `python -m serving.auth --help`")
        repeated = sorted(n for n, k in Counter(e.caller.name for e in entries).items() if k > 1)
        if repeated:
            raise AuthConfigError(
                f"{source}: caller name(s) {repeated} appear more than once; keep one entry each"
            )
        if len({e.digest for e in entries}) != len(entries):
            raise AuthConfigError(
                f"{source}: two entries share one token hash; give each caller its own token"
            )
        self._entries = tuple(entries)
        self.source = source
        # A registry read from a file follows the file: see `_refresh`.
        self._path = Path(path) if path is not None else None
        self._reload_seconds = reload_seconds
        self._checked = time.monotonic()
        self._stamp = _file_stamp(self._path) if self._path is not None else None
        self._reload_lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def entries(self) -> tuple[_Entry, ...]:
        """The current entries (after re-reading the file if it changed)."""
        self._refresh()
        return self._entries

    @classmethod
    def from_file(
        cls, path: Path, reload_seconds: float = DEFAULT_RELOAD_SECONDS, *, allow_empty: bool = False
    ) -> TokenRegistry:
        """Read `[[tokens]]` entries (name, roles, sha256, optional expires_at) from a TOML file.

        The registry re-reads the file when its modification time, size or inode change,
        looking at most every `reload_seconds`.
        """
        return cls(
            _read_entries(Path(path)),
            source=f"tokens file {path}",
            path=Path(path),
            reload_seconds=reload_seconds,
            allow_empty=allow_empty,
        )

    def _refresh(self) -> None:
        """Re-read the tokens file if it changed since the last look (one `stat` every few seconds).

        A file that cannot be read or is malformed keeps the last good entries (an editor may be
        half-way through writing it) and is logged as an error; `python -m serving.auth revoke`
        replaces the file atomically, so it is never seen half-written.
        """
        if self._path is None:
            return
        now = time.monotonic()
        if now - self._checked < self._reload_seconds:
            return
        if not self._reload_lock.acquire(blocking=False):
            return  # another thread is reloading; use the current entries meanwhile
        try:
            self._checked = now
            stamp = _file_stamp(self._path)
            if stamp == self._stamp:
                return
            try:
                entries = _read_entries(self._path)
                TokenRegistry(entries, source=self.source, allow_empty=True)  # same checks as at start-up
            except AuthConfigError as exc:
                log.error("tokens file changed but is not usable; keeping the previous tokens: %s", exc)
                return
            self._entries = tuple(entries)
            self._stamp = stamp
            log.warning("tokens file %s re-read: %d token(s)", self._path, len(entries))
        finally:
            self._reload_lock.release()

    @classmethod
    def from_env(cls) -> TokenRegistry | None:
        """From `DIVERSION_TOKENS_FILE` (a TOML path) or `DIVERSION_TOKENS` ("name:role1+role2:sha256,...").

        None when neither is set; setting both is an error (which one would win is not obvious).
        """
        file = os.environ.get(TOKENS_FILE_ENV, "").strip()
        inline = os.environ.get(TOKENS_ENV, "").strip()
        if file and inline:
            raise AuthConfigError(f"both {TOKENS_FILE_ENV} and {TOKENS_ENV} are set; set only one")
        if file:
            return cls.from_file(Path(file), reload_seconds=_reload_seconds_from_env())
        if not inline:
            return None
        entries = []
        for i, item in enumerate(part.strip() for part in inline.split(",")):
            if not item:
                continue
            fields = item.split(":")
            where = f"{TOKENS_ENV} entry #{i + 1}"
            if len(fields) != 3:
                raise AuthConfigError(
                    f"{where}: expected name:role1+role2:sha256hex, got {len(fields)} field(s)"
                )
            name, roles, sha256 = (f.strip() for f in fields)
            entries.append(_entry(name, [r.strip() for r in roles.split("+")], sha256, where))
        return cls(entries, source=TOKENS_ENV)

    def lookup(self, token: str) -> _Entry | None:
        """The entry a token matches (expired or not), or None; compares with every entry in constant time."""
        digest = hashlib.sha256(token.encode("utf-8")).digest()
        found: _Entry | None = None
        # No early exit: the time taken does not depend on which entry (if any) matched.
        for entry in self.entries:
            matched = hmac.compare_digest(digest, entry.digest)
            found = entry if matched else found
        return found

    def authenticate(self, token: str, now: dt.datetime | None = None) -> Caller | None:
        """The caller a token belongs to, or None (unknown, revoked or expired)."""
        entry = self.lookup(token)
        if entry is None or entry.expired(now or dt.datetime.now(dt.UTC)):
            return None
        return entry.caller


def _file_stamp(path: Path) -> tuple[int, int, int] | None:
    """What tells a changed file apart cheaply: (mtime in ns, size, inode); None when absent."""
    try:
        status = path.stat()
    except OSError:
        return None
    return status.st_mtime_ns, status.st_size, status.st_ino


def _read_entries(path: Path) -> list[_Entry]:
    """The `[[tokens]]` entries of a TOML tokens file, checked one by one."""
    try:
        document = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise AuthConfigError(
            f"tokens file {path} not found; create it with `python -m serving.auth issue --file {path} ...`"
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        raise AuthConfigError(f"tokens file {path}: not valid TOML: {exc}") from exc
    tokens = document.get("tokens", [])
    if not isinstance(tokens, list) or not all(isinstance(t, dict) for t in tokens):
        raise AuthConfigError(f"tokens file {path}: expected [[tokens]] tables with name, roles, sha256")
    return [
        _entry(
            t.get("name"),
            t.get("roles"),
            t.get("sha256"),
            f"tokens file {path}, [[tokens]] #{i + 1}",
            t.get("expires_at"),
        )
        for i, t in enumerate(tokens)
    ]


def _reload_seconds_from_env() -> float:
    value = os.environ.get(RELOAD_SECONDS_ENV, "").strip()
    if not value:
        return DEFAULT_RELOAD_SECONDS
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 3600:
        raise AuthConfigError(f"{RELOAD_SECONDS_ENV}={value!r}: give seconds between 0 and 3600")
    return seconds


def demo_mode_from_env() -> bool:
    """`DIVERSION_DEMO_MODE` as a switch: 1/true/yes/on, or 0/false/no/off/unset."""
    value = os.environ.get(DEMO_MODE_ENV, "").strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"", "0", "false", "no", "off"}:
        return False
    raise AuthConfigError(
        f"{DEMO_MODE_ENV}={value!r}: use 1/true to switch demo mode on, 0/false or unset for off"
    )


def _entry_toml(entry: _Entry) -> str:
    # json.dumps gives valid TOML basic strings; the name pattern keeps them plain anyway.
    text = (
        f"\n[[tokens]]\nname = {json.dumps(entry.caller.name)}\nroles = {json.dumps(sorted(entry.caller.roles))}\n"
        f'sha256 = "{entry.digest.hex()}"\n'
    )
    if entry.expires_at is not None:
        text += f"expires_at = {entry.expires_at.strftime('%Y-%m-%dT%H:%M:%SZ')}\n"
    return text


def parse_expiry(value: str, now: dt.datetime | None = None) -> dt.datetime:
    """`--expires`: a duration from now (`90d`, `12h`, `30m`) or an ISO 8601 date-time (UTC if no offset)."""
    now = now or dt.datetime.now(dt.UTC)
    match = re.fullmatch(r"\s*(\d+)\s*([dhm])\s*", value)
    if match:
        unit = {"d": "days", "h": "hours", "m": "minutes"}[match.group(2)]
        return (now + dt.timedelta(**{unit: int(match.group(1))})).replace(microsecond=0)
    expiry = _expiry(value, f"--expires {value!r}")
    assert expiry is not None
    return expiry


def issue_token(name: str, roles: list[str], file: Path, expires_at: dt.datetime | None = None) -> str:
    """Create a token for `name`, append its hash to the TOML file (created 0600) and return the token.

    The token is returned once and stored nowhere: hand it to the caller now. With
    `expires_at` the token stops working at that time.
    """
    file = Path(file)
    token = new_token()
    entry = _entry(name, list(roles), hash_token(token), f"new token for {name!r}", expires_at)
    existing = _read_entries(file) if file.exists() and file.stat().st_size else []
    TokenRegistry([*existing, entry], source=f"tokens file {file}")  # refuses a repeated name before writing
    file.parent.mkdir(parents=True, exist_ok=True)
    text = _entry_toml(entry)
    descriptor = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(descriptor, "a", encoding="utf-8") as out:
        out.write(text)
    return token


def list_tokens(file: Path) -> list[dict]:
    """Name, roles, expiry and status (active/expired) of each token in the file; never the hashes."""
    now = dt.datetime.now(dt.UTC)
    return [
        {
            "name": e.caller.name,
            "roles": sorted(e.caller.roles),
            "expires_at": e.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ") if e.expires_at else None,
            "status": "expired" if e.expired(now) else "active",
        }
        for e in _read_entries(Path(file))
    ]


def revoke_token(name: str, file: Path) -> None:
    """Remove `name`'s token from the file (rewritten atomically, mode 0600).

    A running service stops accepting the token at its next look at the file (within
    `DIVERSION_TOKENS_RELOAD_SECONDS`). Comments in the file are not kept.
    """
    file = Path(file)
    entries = _read_entries(file)
    kept = [e for e in entries if e.caller.name != name]
    if len(kept) == len(entries):
        known = ", ".join(e.caller.name for e in entries) or "none"
        raise AuthConfigError(f"tokens file {file}: no token named {name!r} (known: {known})")
    text = "# API tokens (SHA-256 hashes only), managed with `python -m serving.auth`\n"
    text += "".join(_entry_toml(e) for e in kept)
    descriptor, temporary = tempfile.mkstemp(dir=file.parent, prefix=f".{file.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, file)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


# --- ASGI middleware -------------------------------------------------------------------

Scope = dict
Message = dict
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_OPEN = object()
_UNLISTED = object()


def _route_policy(path: str) -> object:
    """`_OPEN`, the role a path needs (None: any caller), or `_UNLISTED` (refused)."""
    if ".." in path.split("/"):
        return _UNLISTED  # never let a relative segment smuggle a path under an open prefix
    if path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
        return _OPEN
    if path in ROUTE_ROLES:
        return ROUTE_ROLES[path]
    for prefix, role in ROUTE_ROLES.items():
        if prefix.endswith("/") and path.startswith(prefix):
            return role
    return _UNLISTED


def route_access(path: str) -> tuple[bool, str | None]:
    """(needs a token, role it needs) for a path or OpenAPI path template; unlisted paths need a token."""
    policy = _route_policy(path)
    if policy is _OPEN:
        return False, None
    return True, policy if isinstance(policy, str) else None


async def _json_response(send: Send, status: int, error: str, headers: list[tuple[bytes, bytes]]) -> None:
    body = json.dumps({"error": error}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class AuthMiddleware:
    """401 without a valid bearer token, 403 without the route's role; puts the caller's name in scope["state"]."""

    def __init__(self, app, registry: TokenRegistry | None, demo_mode: bool = False) -> None:
        if registry is None and not demo_mode:
            raise AuthConfigError(
                f"no API tokens configured: set {TOKENS_FILE_ENV} to a tokens file (issue tokens with "
                f"`python -m serving.auth --name NAME --roles scorer --file FILE`) or {TOKENS_ENV}; "
                f"for a demo without authentication set {DEMO_MODE_ENV}=1"
            )
        self.app = app
        self.registry = registry
        self.demo = registry is None
        if self.demo:
            log.warning("DEMO MODE: no authentication, every request runs as 'demo' with all roles")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        policy = _route_policy(path)
        if policy is _OPEN:
            await self.app(scope, receive, send)
            return
        if self.demo:
            caller: Caller | None = Caller("demo", frozenset(ROLES))
        else:
            token = _bearer_token(scope)
            if token is None:
                await self._deny(
                    scope, send, 401, "missing or malformed Authorization header: send 'Bearer <token>'"
                )
                return
            entry = self.registry.lookup(token)
            if entry is None:
                log.warning("401 %s: unknown token", path)
                await self._deny(scope, send, 401, "unknown token", b', error="invalid_token"')
                return
            if entry.expired(dt.datetime.now(dt.UTC)):
                log.warning("401 %s: expired token of %s", path, entry.caller.name)
                await self._deny(scope, send, 401, "token expired", b', error="invalid_token"')
                return
            caller = entry.caller
        if policy is _UNLISTED:
            log.warning("403 %s for %s: no access policy for this path", path, caller.name)
            await self._deny(scope, send, 403, f"no access policy for path {path!r}")
            return
        if policy is not None and policy not in caller.roles:
            log.warning("403 %s for %s: needs role %s", path, caller.name, policy)
            await self._deny(
                scope, send, 403, f"caller {caller.name!r} lacks role {policy!r} needed for {path}"
            )
            return
        scope.setdefault("state", {})["caller"] = caller.name
        await self.app(scope, receive, send)

    async def _deny(self, scope: Scope, send: Send, status: int, error: str, challenge: bytes = b"") -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": error[:120]})
            return
        headers = (
            [(b"www-authenticate", b'Bearer realm="diversion-risk"' + challenge)] if status == 401 else []
        )
        await _json_response(send, status, error, headers)


def _bearer_token(scope: Scope) -> str | None:
    values = [value for key, value in scope.get("headers") or [] if key.lower() == b"authorization"]
    if len(values) != 1:
        return None
    try:
        scheme, _, token = values[0].decode("latin-1").strip().partition(" ")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        return None
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        return None
    return token


_COMMANDS = ("issue", "list", "revoke")


def main(argv: list[str] | None = None) -> None:
    """Issue, list or revoke API tokens in a tokens file (`issue` when no command is given)."""
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in (*_COMMANDS, "-h", "--help"):
        argv = ["issue", *argv]  # `python -m serving.auth --name ... --roles ...` as before
    parser = argparse.ArgumentParser(prog="python -m serving.auth", description=main.__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    issue = commands.add_parser("issue", help="create a token, store its hash, print the token once")
    issue.add_argument("--name", required=True, help="caller name, recorded in the audit trail")
    issue.add_argument("--roles", required=True, nargs="+", choices=ROLES, help="roles the caller holds")
    issue.add_argument(
        "--expires", help="when the token stops working: a duration (90d, 12h, 30m) or an ISO 8601 date-time"
    )
    listing = commands.add_parser("list", help="names, roles, expiry and status of the tokens (no hashes)")
    revoke = commands.add_parser(
        "revoke", help="remove a caller's token; a running service drops it in seconds"
    )
    revoke.add_argument("--name", required=True, help="caller name of the token to revoke")
    for command in (issue, listing, revoke):
        command.add_argument(
            "--file", required=True, type=Path, help="TOML tokens file (git-ignored, mode 0600)"
        )
    args = parser.parse_args(argv)
    try:
        if args.command == "issue":
            expires_at = parse_expiry(args.expires) if args.expires else None
            print(issue_token(args.name, args.roles, args.file, expires_at))
        elif args.command == "list":
            for row in list_tokens(args.file):
                print(
                    f"{row['name']}\t{'+'.join(row['roles'])}\t{row['expires_at'] or 'never expires'}\t{row['status']}"
                )
        else:
            revoke_token(args.name, args.file)
            print(f"revoked {args.name}", file=sys.stderr)
    except AuthConfigError as exc:
        parser.exit(2, f"error: {exc}\n")


if __name__ == "__main__":
    main()
