"""A local HTTP server speaking the part of the Hugging Face hub protocol that datasets downloads use.

Serves one dataset repository from a folder at a fixed commit: repo info
(``/api/datasets/<repo>/revision/<rev>``), the file tree (``/api/datasets/<repo>/tree/<rev>``)
and file downloads (``HEAD``/``GET /datasets/<repo>/resolve/<rev>/<path>``). Point
``HF_ENDPOINT`` at it. Every request is recorded, so tests can count downloads.
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    def __init__(self, repo_id: str, root: Path):
        self.repo_id, self.root = repo_id, root
        self.requests: list[tuple[str, str]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHub:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def files(self) -> list[str]:
        return sorted(p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file())

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_HEAD(self):
                self._serve(body=False)

            def do_GET(self):
                self._serve(body=True)

            def _send(self, status: int, payload: bytes, headers: dict, body: bool) -> None:
                self.send_response(status)
                for key, value in {"Content-Length": str(len(payload)), **headers}.items():
                    self.send_header(key, value)
                self.end_headers()
                if body:
                    self.wfile.write(payload)

            def _serve(self, body: bool) -> None:
                path = unquote(urlparse(self.path).path)
                hub.requests.append((self.command, path))
                api = f"/api/datasets/{hub.repo_id}/"
                resolve = f"/datasets/{hub.repo_id}/resolve/"
                if path.startswith(api + "revision/"):
                    info = {"id": hub.repo_id, "sha": COMMIT, "private": False, "siblings": [{"rfilename": f} for f in hub.files()]}
                    return self._send(200, json.dumps(info).encode(), {"Content-Type": "application/json"}, body)
                if path.startswith(api + "tree/"):
                    tree = [
                        {"type": "file", "path": f, "size": (hub.root / f).stat().st_size, "oid": _git_oid(hub.root / f)}
                        for f in hub.files()
                    ]
                    return self._send(200, json.dumps(tree).encode(), {"Content-Type": "application/json"}, body)
                if path.startswith(resolve):
                    _, _, rest = path[len(resolve):].partition("/")
                    file = hub.root / rest
                    if file.is_file():
                        data = file.read_bytes()
                        headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{_git_oid(file)}"', "Content-Type": "application/octet-stream"}
                        return self._send(200, data, headers, body)
                self._send(404, b'{"error": "not found"}', {"Content-Type": "application/json", "X-Error-Code": "EntryNotFound"}, body)

        return Handler


def _git_oid(path: Path) -> str:
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
