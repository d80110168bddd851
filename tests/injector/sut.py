"""A small HTTP service under test that logs every request it receives, as received."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

STATUS_BODY = {"ok": True, "items": [{"id": 1}, {"id": 2}], "version": "1.2.3"}


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: list[tuple[str, str]]
    """Names exactly as sent, in order."""
    body: Any
    """Parsed JSON for application/json, parsed form for forms, else text."""

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None


@dataclass
class Sut:
    server: ThreadingHTTPServer
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def host(self) -> str:
        return str(self.server.server_address[0])

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def take(self) -> list[Received]:
        with self.lock:
            out, self.received = self.received, []
        return out


def _handler(sut: Sut) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _serve(self) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode() if length else ""
            ctype = self.headers.get("Content-Type") or ""
            body: Any = raw
            if ctype.startswith("application/json") and raw:
                body = json.loads(raw)
            elif ctype.startswith("application/x-www-form-urlencoded"):
                body = parse_qs(raw)
            got = Received(
                self.command, url.path, parse_qs(url.query), list(self.headers.items()), body
            )
            with sut.lock:
                sut.received.append(got)
            if url.path == "/status":
                self._send(200, "application/json", json.dumps(STATUS_BODY).encode())
            elif url.path == "/text":
                self._send(200, "text/plain", b"service v1.2.3 ok")
            elif url.path == "/echo":
                self._send(200, "application/json", json.dumps({"body": body}).encode())
            else:
                self._send(404, "text/plain", b"not found")

        def _send(self, status: int, ctype: str, payload: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("X-Served-By", "sut")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = _serve

    return Handler


class RunningSut:
    """``with RunningSut() as sut:`` serves on 127.0.0.1 on a free port until the block ends."""

    def __enter__(self) -> Sut:
        server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
        self.sut = Sut(server)
        server.RequestHandlerClass = _handler(self.sut)
        self.thread = threading.Thread(target=server.serve_forever, daemon=True)
        self.thread.start()
        return self.sut

    def __exit__(self, *exc: object) -> None:
        self.sut.server.shutdown()
        self.sut.server.server_close()
        self.thread.join(10)
