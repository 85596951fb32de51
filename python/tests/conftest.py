"""Shared fixtures: a loopback HTTP origin that counts requests and can hold a body
back, and cache directories."""

from __future__ import annotations

import os
import shutil
import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, Optional

import pytest

#: How long any wait in a test may take before the test fails instead of hanging.
WAIT = 60


@dataclass
class Route:
    """A body served at a path. With `hold_at`, the first request gets the headers and
    that many bytes, then the rest once `release` is set."""

    body: bytes
    hold_at: Optional[int] = None
    release: threading.Event = field(default_factory=threading.Event)
    arrived: threading.Event = field(default_factory=threading.Event)


class Origin:
    """The server's routes and request counts, as a test sees them."""

    def __init__(self, server: ThreadingHTTPServer) -> None:
        self.server = server
        self.routes: Dict[str, Route] = {}
        self.requests: Counter = Counter()
        self.lock = threading.Lock()

    def url(self, path: str) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}{path}"

    def serve(self, path: str, body: bytes, hold_at: Optional[int] = None) -> Route:
        route = Route(body, hold_at)
        self.routes[path] = route
        return route


class Handler(BaseHTTPRequestHandler):
    origin: Origin

    def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
        origin = self.server.origin  # type: ignore[attr-defined]
        with origin.lock:
            origin.requests[self.path] += 1
            first = origin.requests[self.path] == 1
        route = origin.routes.get(self.path)
        if route is None:
            self.send_error(404, "no such blob")
            return
        route.arrived.set()
        self.send_response(200)
        self.send_header("Content-Length", str(len(route.body)))
        self.end_headers()
        try:
            if route.hold_at is not None and first:
                self.wfile.write(route.body[: route.hold_at])
                self.wfile.flush()
                route.release.wait(WAIT)
                self.wfile.write(route.body[route.hold_at :])
            else:
                self.wfile.write(route.body)
        except OSError:
            pass  # the reader went away (a killed process): nothing to answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def origin():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    origin = Origin(server)
    server.origin = origin  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield origin
    for route in origin.routes.values():
        route.release.set()
    server.shutdown()
    server.server_close()


@pytest.fixture
def cache_dir(tmp_path: Path) -> str:
    return str(tmp_path / "cache")


def blob(size: int, seed: int = 1) -> bytes:
    """`size` bytes that differ from offset to offset."""
    return bytes((i * 131 + seed) % 251 for i in range(size))


def cli() -> Optional[str]:
    """The `readthrough` binary: $READTHROUGH_CLI, or the root crate's debug build."""
    named = os.environ.get("READTHROUGH_CLI")
    if named:
        return named
    built = Path(__file__).resolve().parents[2] / "target" / "debug" / "readthrough"
    return str(built) if built.exists() else shutil.which("readthrough")
