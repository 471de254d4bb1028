"""A loopback OSV-API mirror of the vendored advisory snapshot, for pip-audit when the network is not there.

pip-audit 2.10.1 (`-s osv --osv-url URL`) POSTs one `{"package": {"name", "ecosystem"}, "version"}` per
dependency to `URL` (`/v1/query`; it never uses `/v1/querybatch`) and reads `{"vulns": [OSV records]}`, or
`{}` for none. This server answers that from `pypi-advisories.json`:

* a version is affected by a record when it is in the record's `versions` list or inside one of its
  ECOSYSTEM ranges (OSV evaluation: events sorted by version, `introduced` opens, `fixed` closes at that
  version, `last_affected` closes after it); withdrawn records are never served;
* a package the snapshot does not cover is NOT answered with "no vulnerabilities": the mirror answers
  404 with `{"code": 5, "message": "... not covered ..."}`, which pip-audit turns into a failed run
  (no report), never into a clean one. Callers audit only covered packages and list the rest as
  unaudited.

`python -m reliability.advisories.osv_mirror [--port N]` serves it on 127.0.0.1 until interrupted.
"""

from __future__ import annotations

import argparse
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from packaging.version import InvalidVersion, Version

SNAPSHOT = Path(__file__).with_name("pypi-advisories.json")
QUERY_PATH = "/v1/query"


def normalise(name: str) -> str:
    """PEP 503 name: what pip-audit sends as `canonical_name` and what the snapshot is keyed by."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _event_version(value: str) -> Version:
    return Version("0") if value == "0" else Version(value)


def in_ecosystem_range(version: Version, events: list[dict[str, str]]) -> bool:
    """OSV range evaluation for one ECOSYSTEM range (`limit` only applies to GIT ranges)."""
    affected = False
    for event in sorted(events, key=lambda e: _event_version(next(iter(e.values())))):
        kind, value = next(iter(event.items()))
        bound = _event_version(value)
        if kind == "introduced" and version >= bound:
            affected = True
        elif (kind == "fixed" and version >= bound) or (kind == "last_affected" and version > bound):
            affected = False
    return affected


def affects(record: dict, name: str, version: Version) -> bool:
    """Whether an OSV record says `name==version` (PyPI) is affected."""
    if record.get("withdrawn"):
        return False
    for affected in record.get("affected", []):
        package = affected.get("package", {})
        if package.get("ecosystem") != "PyPI" or normalise(package.get("name", "")) != name:
            continue
        for listed in affected.get("versions", []):
            try:
                if Version(listed) == version:
                    return True
            except InvalidVersion:
                continue
        for affected_range in affected.get("ranges", []):
            if affected_range.get("type") == "ECOSYSTEM" and in_ecosystem_range(
                version, affected_range.get("events", [])
            ):
                return True
    return False


@dataclass
class Snapshot:
    """The vendored advisories, indexed by package, and which packages it covers."""

    header: dict
    by_package: dict[str, list[dict]]
    covered: frozenset[str]

    @classmethod
    def load(cls, path: Path = SNAPSHOT) -> Snapshot:
        document = json.loads(path.read_text())
        header = document["header"]
        by_package: dict[str, list[dict]] = {}
        for record in document["vulns"]:
            for affected in record["affected"]:
                for affected_range in affected.get("ranges", []):
                    for event in affected_range.get("events", []):
                        _event_version(next(iter(event.values())))  # a bad bound fails here, at load
                name = normalise(affected["package"]["name"])
                if record not in by_package.setdefault(name, []):
                    by_package[name].append(record)
        covered = frozenset(normalise(name) for name in header["covered_packages"])
        return cls(header, by_package, covered)

    @property
    def label(self) -> str:
        return f"the offline PyPA advisory snapshot of {self.header['built']}"

    def query(self, name: str, version: str) -> list[dict] | None:
        """Records affecting `name==version`; None when the snapshot does not cover the package."""
        name = normalise(name)
        if name not in self.covered:
            return None
        parsed = Version(version)
        return [record for record in self.by_package.get(name, []) if affects(record, name, parsed)]


@dataclass
class MirrorLog:
    """What the mirror was asked, so a caller can check pip-audit really asked it."""

    answered: dict[str, str] = field(default_factory=dict)  # package -> version answered from the snapshot
    refused: dict[str, str] = field(default_factory=dict)  # package -> reason (not covered, bad request)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _handler(snapshot: Snapshot, log: MirrorLog) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # quiet: the caller reports
            pass

        def _send(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._send(404, {"code": 5, "message": f"only POST {QUERY_PATH} is served"})

        def do_POST(self) -> None:
            if self.path.split("?", 1)[0] != QUERY_PATH:
                self._send(404, {"code": 5, "message": f"only POST {QUERY_PATH} is served"})
                return
            try:
                query = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                package = query["package"]
                name, version = normalise(package["name"]), str(query["version"])
                if package.get("ecosystem", "PyPI") != "PyPI":
                    raise ValueError(f"ecosystem {package.get('ecosystem')!r} is not served")
                found = snapshot.query(name, version)
            except (ValueError, KeyError, TypeError, InvalidVersion) as exc:
                with log.lock:
                    log.refused["<bad request>"] = str(exc)[:200]
                self._send(400, {"code": 3, "message": f"bad query: {exc}"})
                return
            if found is None:
                reason = f"{name} is not covered by {snapshot.label}"
                with log.lock:
                    log.refused[name] = reason
                self._send(404, {"code": 5, "message": reason})
                return
            with log.lock:
                log.answered[name] = version
            self._send(200, {"vulns": found} if found else {})

    return Handler


@contextmanager
def serve(snapshot: Snapshot | None = None, port: int = 0) -> Iterator[tuple[str, MirrorLog]]:
    """Serve the snapshot on 127.0.0.1 (an ephemeral port by default); yields (query URL, log)."""
    snapshot = snapshot or Snapshot.load()
    log = MirrorLog()
    server = ThreadingHTTPServer(("127.0.0.1", port), _handler(snapshot, log))
    thread = threading.Thread(target=server.serve_forever, name="osv-mirror", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}{QUERY_PATH}", log
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, default=8787)
    parser.add_argument("--snapshot", type=Path, default=SNAPSHOT)
    args = parser.parse_args()
    snapshot = Snapshot.load(args.snapshot)
    with serve(snapshot, args.port) as (url, _log):
        print(
            f"{snapshot.label}: {len(snapshot.covered)} packages covered; pip-audit -s osv --osv-url {url}",
            flush=True,
        )
        threading.Event().wait()


if __name__ == "__main__":
    main()
