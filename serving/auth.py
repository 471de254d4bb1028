"""Bearer tokens with roles, checked at the edge of the service by an ASGI middleware.

Callers present `Authorization: Bearer <token>`. Tokens are kept only as SHA-256 hashes
(in a git-ignored TOML file or the `DIVERSION_TOKENS` variable); each names its caller and
the roles it holds. `ROUTE_ROLES` says which role each path needs. Without tokens the
service refuses to start unless demo mode is switched on explicitly.

Issue a token (printed once, only its hash is kept):
    python -m serving.auth --name customs-ices --roles scorer --file secrets/tokens.toml
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import tomllib
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

ROLES = ("scorer", "analyst", "auditor", "risk_officer")

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
    "/rules": "risk_officer",
    "/rules/": "risk_officer",
    "/watchlists": "risk_officer",
    "/watchlists/": "risk_officer",
}
#: Paths served without a token: probes, metrics, the OpenAPI document and docs page.
OPEN_PATHS = frozenset({"/livez", "/readyz", "/healthz", "/metrics", "/docs.json", "/"})
OPEN_PREFIXES = ("/static_content/",)

TOKENS_FILE_ENV = "DIVERSION_TOKENS_FILE"
TOKENS_ENV = "DIVERSION_TOKENS"
DEMO_MODE_ENV = "DIVERSION_DEMO_MODE"

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


def hash_token(token: str) -> str:
    """SHA-256 (hex) of a token: the only form in which tokens are stored."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A fresh random token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def _entry(name: object, roles: object, sha256: object, where: str) -> _Entry:
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
    return _Entry(Caller(name, frozenset(roles)), bytes.fromhex(sha256))


class TokenRegistry:
    """Known token hashes and the caller each one stands for."""

    def __init__(self, entries: list[_Entry], source: str = "tokens") -> None:
        if not entries:
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

    def __len__(self) -> int:
        return len(self._entries)

    @classmethod
    def from_file(cls, path: Path) -> TokenRegistry:
        """Read `[[tokens]]` entries (name, roles, sha256) from a TOML file."""
        try:
            document = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise AuthConfigError(
                f"tokens file {path} not found; create it with `python -m serving.auth --file {path} ...`"
            ) from exc
        except tomllib.TOMLDecodeError as exc:
            raise AuthConfigError(f"tokens file {path}: not valid TOML: {exc}") from exc
        tokens = document.get("tokens", [])
        if not isinstance(tokens, list) or not all(isinstance(t, dict) for t in tokens):
            raise AuthConfigError(f"tokens file {path}: expected [[tokens]] tables with name, roles, sha256")
        entries = [
            _entry(t.get("name"), t.get("roles"), t.get("sha256"), f"tokens file {path}, [[tokens]] #{i + 1}")
            for i, t in enumerate(tokens)
        ]
        return cls(entries, source=f"tokens file {path}")

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
            return cls.from_file(Path(file))
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

    def authenticate(self, token: str) -> Caller | None:
        """The caller a token belongs to, or None; compares with every entry in constant time."""
        digest = hashlib.sha256(token.encode("utf-8")).digest()
        found: Caller | None = None
        # No early exit: the time taken does not depend on which entry (if any) matched.
        for entry in self._entries:
            matched = hmac.compare_digest(digest, entry.digest)
            found = entry.caller if matched else found
        return found


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


def issue_token(name: str, roles: list[str], file: Path) -> str:
    """Create a token for `name`, append its hash to the TOML file (created 0600) and return the token.

    The token is returned once and stored nowhere: hand it to the caller now.
    """
    file = Path(file)
    token = new_token()
    entry = _entry(name, list(roles), hash_token(token), f"new token for {name!r}")
    existing = TokenRegistry.from_file(file)._entries if file.exists() and file.stat().st_size else ()
    TokenRegistry([*existing, entry], source=f"tokens file {file}")  # refuses a repeated name before writing
    file.parent.mkdir(parents=True, exist_ok=True)
    # json.dumps gives valid TOML basic strings; the name pattern keeps them plain anyway.
    text = (
        f"\n[[tokens]]\nname = {json.dumps(name)}\nroles = {json.dumps(sorted(set(roles)))}\n"
        f'sha256 = "{entry.digest.hex()}"\n'
    )
    descriptor = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(descriptor, "a", encoding="utf-8") as out:
        out.write(text)
    return token


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
            caller = self.registry.authenticate(token)
            if caller is None:
                log.warning("401 %s: unknown token", path)
                await self._deny(scope, send, 401, "unknown token", b', error="invalid_token"')
                return
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


def main(argv: list[str] | None = None) -> None:
    """Issue a token: append its hash to the tokens file and print the token once."""
    parser = argparse.ArgumentParser(prog="python -m serving.auth", description=main.__doc__)
    parser.add_argument("--name", required=True, help="caller name, recorded in the audit trail")
    parser.add_argument("--roles", required=True, nargs="+", choices=ROLES, help="roles the caller holds")
    parser.add_argument("--file", required=True, type=Path, help="TOML tokens file (git-ignored, mode 0600)")
    args = parser.parse_args(argv)
    token = issue_token(args.name, args.roles, args.file)
    print(token)


if __name__ == "__main__":
    main()
