"""Bearer-token authentication: hashing, token registries, issuing tokens, and the route policy."""

from __future__ import annotations

import asyncio
import logging
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from serving.auth import (
    ROLES,
    AuthConfigError,
    AuthMiddleware,
    Caller,
    TokenRegistry,
    demo_mode_from_env,
    hash_token,
    issue_token,
    main,
    new_token,
)

TOKENS = {
    "scorer": "scorer-token-" + "s" * 30,
    "analyst": "analyst-token-" + "a" * 30,
    "auditor": "auditor-token-" + "u" * 30,
    "everything": "everything-token-" + "e" * 30,
}
ROLES_OF = {
    "scorer": "scorer",
    "analyst": "analyst",
    "auditor": "auditor",
    "everything": "scorer+analyst+auditor+monitor+risk_officer",
}

OPEN = ["/livez", "/readyz", "/healthz", "/docs.json", "/", "/static_content/app.js"]
#: path -> role it needs (None: any authenticated caller)
PROTECTED = {
    "/score": "scorer",
    "/history/declarations": "analyst",
    "/history/seizures": "analyst",
    "/outcomes": "analyst",
    "/model": None,
    "/schema.json": None,
    "/audit": "auditor",
    "/audit/declarations/DEC-1": "auditor",
    "/metrics": "monitor",
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DIVERSION_TOKENS_FILE", "DIVERSION_TOKENS", "DIVERSION_DEMO_MODE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> TokenRegistry:
    inline = ",".join(f"{name}:{ROLES_OF[name]}:{hash_token(token)}" for name, token in TOKENS.items())
    monkeypatch.setenv("DIVERSION_TOKENS", inline)
    registry = TokenRegistry.from_env()
    assert registry is not None
    return registry


async def _echo(request: Request) -> JSONResponse:
    return JSONResponse({"path": request.url.path, "caller": getattr(request.state, "caller", None)})


def _app() -> Starlette:
    paths = [p for p in OPEN if not p.startswith("/static_content/")] + list(PROTECTED) + ["/unlisted"]
    routes = [Route(p, _echo, methods=["GET", "POST"]) for p in paths]
    routes += [
        Route("/static_content/{rest:path}", _echo),
        Route("/audit/{rest:path}", _echo, methods=["GET"]),
    ]
    return Starlette(routes=routes)


@pytest.fixture
def client(registry: TokenRegistry) -> Iterator[TestClient]:
    with TestClient(AuthMiddleware(_app(), registry, demo_mode=False)) as client:
        yield client


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- hashing and registries ---------------------------------------------------------------


def test_hash_token_is_sha256_hex() -> None:
    assert hash_token("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_new_tokens_are_long_and_distinct() -> None:
    tokens = {new_token() for _ in range(100)}
    assert len(tokens) == 100
    assert all(len(t) >= 43 for t in tokens)


def test_authenticate_finds_the_caller_of_a_known_token(registry: TokenRegistry) -> None:
    assert registry.authenticate(TOKENS["analyst"]) == Caller("analyst", frozenset({"analyst"}))
    assert registry.authenticate(TOKENS["everything"]) == Caller("everything", frozenset(ROLES))


def test_authenticate_refuses_unknown_tokens_and_hashes(registry: TokenRegistry) -> None:
    assert registry.authenticate("not-a-token") is None
    assert registry.authenticate("") is None
    assert registry.authenticate(TOKENS["scorer"] + "x") is None
    # Knowing the stored hash is not enough: it is not the token.
    assert registry.authenticate(hash_token(TOKENS["scorer"])) is None


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_registry_from_toml_file(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "tokens.toml",
        f'[[tokens]]\nname = "customs-ices"\nroles = ["scorer"]\nsha256 = "{hash_token("t1")}"\n\n'
        f'[[tokens]]\nname = "risk-desk"\nroles = ["analyst", "auditor"]\nsha256 = "{hash_token("t2")}"\n',
    )
    registry = TokenRegistry.from_file(path)

    assert len(registry) == 2
    assert registry.authenticate("t1") == Caller("customs-ices", frozenset({"scorer"}))
    assert registry.authenticate("t2") == Caller("risk-desk", frozenset({"analyst", "auditor"}))


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ('name = "x"\nroles = ["admin"]\nsha256 = "{h}"', r"#2 \(x\): unknown role\(s\) \['admin'\]"),
        ('name = "x"\nroles = []\nsha256 = "{h}"', "#2 .*non-empty list"),
        ('name = "x"\nroles = ["scorer"]\nsha256 = "my-clear-token"', "#2 .*64 lowercase hex"),
        ('name = "has space"\nroles = ["scorer"]\nsha256 = "{h}"', "#2: name 'has space'"),
        ('name = "first"\nroles = ["scorer"]\nsha256 = "{h}"', r"\['first'\] appear more than once"),
        ('name = "x"\nroles = ["scorer"]\nsha256 = "{h0}"', "share one token hash"),
    ],
)
def test_registry_file_errors_name_the_file_and_entry(tmp_path: Path, entry: str, message: str) -> None:
    first = f'[[tokens]]\nname = "first"\nroles = ["scorer"]\nsha256 = "{hash_token("t0")}"\n'
    path = _write(
        tmp_path / "tokens.toml",
        first + "[[tokens]]\n" + entry.format(h=hash_token("t1"), h0=hash_token("t0")) + "\n",
    )
    with pytest.raises(AuthConfigError, match=message) as error:
        TokenRegistry.from_file(path)
    assert str(path) in str(error.value)


def test_registry_file_missing_or_broken(tmp_path: Path) -> None:
    with pytest.raises(AuthConfigError, match="not found"):
        TokenRegistry.from_file(tmp_path / "absent.toml")
    with pytest.raises(AuthConfigError, match="not valid TOML"):
        TokenRegistry.from_file(_write(tmp_path / "broken.toml", "[[tokens]\n"))
    with pytest.raises(AuthConfigError, match="no tokens"):
        TokenRegistry.from_file(_write(tmp_path / "empty.toml", "# nothing yet\n"))


def test_from_env_is_none_without_configuration() -> None:
    assert TokenRegistry.from_env() is None


def test_from_env_reads_inline_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "DIVERSION_TOKENS", f" ices:scorer:{hash_token('a')} , desk:analyst+auditor:{hash_token('b')},"
    )
    registry = TokenRegistry.from_env()

    assert registry is not None and len(registry) == 2
    assert registry.authenticate("b") == Caller("desk", frozenset({"analyst", "auditor"}))


def test_from_env_reads_the_tokens_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    token = issue_token("customs-ices", ["scorer"], path)
    monkeypatch.setenv("DIVERSION_TOKENS_FILE", str(path))

    registry = TokenRegistry.from_env()
    assert registry is not None
    assert registry.authenticate(token) == Caller("customs-ices", frozenset({"scorer"}))


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"DIVERSION_TOKENS": "ices:scorer"}, "entry #1: expected name:role1\\+role2:sha256hex"),
        ({"DIVERSION_TOKENS": f"ices:boss:{hash_token('a')}"}, "unknown role"),
        ({"DIVERSION_TOKENS": "x:scorer:" + "0" * 64, "DIVERSION_TOKENS_FILE": "t.toml"}, "set only one"),
    ],
)
def test_from_env_errors(monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], message: str) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(AuthConfigError, match=message):
        TokenRegistry.from_env()


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("true", True), ("TRUE", True), ("0", False), ("false", False), ("", False)],
)
def test_demo_mode_from_env(monkeypatch: pytest.MonkeyPatch, value: str, expected: bool) -> None:
    monkeypatch.setenv("DIVERSION_DEMO_MODE", value)
    assert demo_mode_from_env() is expected


def test_demo_mode_unset_is_off_and_typos_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    assert demo_mode_from_env() is False
    monkeypatch.setenv("DIVERSION_DEMO_MODE", "ture")
    with pytest.raises(AuthConfigError, match="DIVERSION_DEMO_MODE"):
        demo_mode_from_env()


# --- issuing tokens ----------------------------------------------------------------------


def test_issue_token_creates_a_private_file_holding_only_hashes(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "tokens.toml"
    first = issue_token("customs-ices", ["scorer"], path)
    second = issue_token("risk-desk", ["auditor", "analyst"], path)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert first not in text and second not in text
    assert hash_token(first) in text and hash_token(second) in text
    registry = TokenRegistry.from_file(path)
    assert registry.authenticate(first) == Caller("customs-ices", frozenset({"scorer"}))
    assert registry.authenticate(second) == Caller("risk-desk", frozenset({"analyst", "auditor"}))


def test_issue_token_refuses_a_repeated_name_or_unknown_role_and_leaves_the_file_alone(
    tmp_path: Path,
) -> None:
    path = tmp_path / "tokens.toml"
    issue_token("customs-ices", ["scorer"], path)
    before = path.read_text()

    with pytest.raises(AuthConfigError, match="more than once"):
        issue_token("customs-ices", ["analyst"], path)
    with pytest.raises(AuthConfigError, match="unknown role"):
        issue_token("other", ["admin"], path)
    assert path.read_text() == before


def test_cli_prints_the_token_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "tokens.toml"
    main(["--name", "risk-desk", "--roles", "analyst", "auditor", "--file", str(path)])

    token = capsys.readouterr().out.strip()
    assert TokenRegistry.from_file(path).authenticate(token) == Caller(
        "risk-desk", frozenset({"analyst", "auditor"})
    )


# --- the middleware ----------------------------------------------------------------------


def _expected(required: str | None, credential: str) -> int:
    if credential == "none" or credential == "bad":
        return 401
    roles = set(ROLES_OF[credential].split("+"))
    return 200 if required is None or required in roles else 403


@pytest.mark.parametrize("credential", ["none", "bad", *TOKENS])
@pytest.mark.parametrize(("path", "required"), list(PROTECTED.items()))
def test_route_policy_matrix(client: TestClient, path: str, required: str | None, credential: str) -> None:
    headers = (
        {} if credential == "none" else _bearer("wrong-token" if credential == "bad" else TOKENS[credential])
    )
    response = client.get(path, headers=headers)

    assert response.status_code == _expected(required, credential)
    if response.status_code == 200:
        assert response.json() == {"path": path, "caller": credential}
    else:
        assert response.headers["content-type"] == "application/json"
        assert response.json()["error"]
    if response.status_code == 401:
        assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("path", OPEN)
@pytest.mark.parametrize("credential", ["none", "bad", "scorer"])
def test_open_paths_need_no_token(client: TestClient, path: str, credential: str) -> None:
    headers = (
        {} if credential == "none" else _bearer("wrong-token" if credential == "bad" else TOKENS[credential])
    )
    response = client.get(path, headers=headers)

    assert response.status_code == 200
    assert response.json()["caller"] is None


def test_post_is_policed_like_get(client: TestClient) -> None:
    assert client.post("/score", json={"declarations": []}).status_code == 401
    assert client.post("/score", json={}, headers=_bearer(TOKENS["analyst"])).status_code == 403
    assert client.post("/score", json={}, headers=_bearer(TOKENS["scorer"])).json()["caller"] == "scorer"


def test_unlisted_paths_are_refused_even_with_every_role(client: TestClient) -> None:
    assert client.get("/unlisted").status_code == 401
    response = client.get("/unlisted", headers=_bearer(TOKENS["everything"]))
    assert response.status_code == 403
    assert "no access policy" in response.json()["error"]


@pytest.mark.parametrize(
    "authorization",
    [
        "",
        "Bearer",
        "Bearer ",
        f"Basic {TOKENS['scorer']}",
        f"Token {TOKENS['scorer']}",
        f"Bearer a b {TOKENS['scorer']}",
    ],
)
def test_malformed_authorization_is_401(client: TestClient, authorization: str) -> None:
    response = client.get("/model", headers={"Authorization": authorization})

    assert response.status_code == 401
    assert "Authorization" in response.json()["error"]
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_scheme_is_case_insensitive(client: TestClient) -> None:
    assert client.get("/model", headers={"Authorization": f"bearer {TOKENS['auditor']}"}).status_code == 200


def test_two_authorization_headers_are_refused(registry: TokenRegistry) -> None:
    headers = [(b"authorization", f"Bearer {TOKENS['scorer']}".encode())] * 2
    assert _raw_status(AuthMiddleware(_app(), registry), "/score", headers) == 401


def test_relative_segments_cannot_reach_a_protected_path_through_an_open_prefix(
    registry: TokenRegistry,
) -> None:
    # HTTP clients normalise "..", so send the raw ASGI scope a hostile proxy could pass on.
    assert _raw_status(AuthMiddleware(_app(), registry), "/static_content/../score", []) == 401


def test_tokens_never_reach_the_logs(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "leaked-" + new_token()
    client.get("/score", headers=_bearer(secret))
    client.get("/score", headers=_bearer(TOKENS["analyst"]))
    client.get("/score", headers=_bearer(TOKENS["scorer"]))

    assert caplog.records, "denials are logged"
    assert all(token not in caplog.text for token in [secret, *TOKENS.values()])


def test_demo_mode_lets_everyone_through_as_demo() -> None:
    with TestClient(AuthMiddleware(_app(), None, demo_mode=True)) as client:
        for path in PROTECTED:
            response = client.get(path)
            assert response.status_code == 200
            assert response.json()["caller"] == "demo"
        assert client.get("/livez").json()["caller"] is None


def test_demo_mode_with_tokens_still_checks_them(registry: TokenRegistry) -> None:
    with TestClient(AuthMiddleware(_app(), registry, demo_mode=True)) as client:
        assert client.get("/score").status_code == 401
        assert client.get("/score", headers=_bearer(TOKENS["scorer"])).status_code == 200


def test_no_tokens_and_no_demo_mode_refuses_to_start() -> None:
    with pytest.raises(AuthConfigError, match="no API tokens configured.*DIVERSION_DEMO_MODE=1"):
        AuthMiddleware(_app(), None, demo_mode=False)


def _raw_status(app: AuthMiddleware, path: str, headers: list[tuple[bytes, bytes]]) -> int:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
    }
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return next(m["status"] for m in sent if m["type"] == "http.response.start")
