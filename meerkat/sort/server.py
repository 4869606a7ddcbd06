"""The sorting page's server: Python's own ThreadingHTTPServer, the page's three static files, and
a small JSON API over session.py.

Why the standard library: one page for one person, a few requests a second; it needs no
dependency, nothing to pin or patch, and runs wherever meerkat does (the image, the SIF, a login
node).

Safe to serve:
- It binds 127.0.0.1 unless --host says otherwise (0.0.0.0 in a container, for `-p
  127.0.0.1:8765:8765`).
- Every request needs the session's random token, wherever it listens: a machine's other users
  reach its loopback too (a shared login node). The printed URL carries it once; the page then
  holds it in a cookie that is HttpOnly and SameSite=Strict, so no other site's page sends it.
- A request that changes files must be a POST of JSON with the token in an X-Meerkat-Token header
  and no foreign Origin: a cross-site form can send none of these, and a script of another
  origin cannot set the header without a CORS preflight, which this server never grants.
- Crops and thumbnails are found by their path below CROPS, checked by paths.below (no `..`, no
  link, no absolute path, whatever the encoding), and must be crops the session listed.
"""

import hmac
import json
import logging
import secrets
import signal
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from meerkat.core import atomic
from meerkat.core.nesting import check_apart
from meerkat.core.serving import WILDCARDS, check_port, display_url
from meerkat.sort import thumbs
from meerkat.sort.paths import Refused
from meerkat.sort.session import Session

log = logging.getLogger(__name__)

STATIC = {"sort.js": "text/javascript; charset=utf-8", "sort.css": "text/css; charset=utf-8"}
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
}
MAX_BODY = 1 << 20


def static(name: str) -> bytes:
    return resources.files("meerkat.sort").joinpath("static", name).read_bytes()


class Handler(BaseHTTPRequestHandler):
    server: "SortServer"
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        log.debug("%s %s", self.address_string(), format % args)

    # --- answers ------------------------------------------------------------------------------------

    def _send(self, status: int, body: bytes, kind: str, extra: dict | None = None) -> None:
        self.send_response(status)
        for name, value in {**HEADERS, "Content-Type": kind, "Content-Length": str(len(body)), **(extra or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, data: dict) -> None:
        self._send(status, json.dumps(data).encode(), "application/json", {"Cache-Control": "no-store"})

    def _refuse(self, status: int, why: str) -> None:
        self._json(status, {"error": why})

    def _file(self, path: Path, kind: str, cache: str) -> None:
        self._send(HTTPStatus.OK, path.read_bytes(), kind, {"Cache-Control": cache})

    # --- who may ask ----------------------------------------------------------------------------------

    def _token_ok(self, query: dict) -> bool:
        token = self.server.token
        given = query.get("token", [""])[0] or self.headers.get("X-Meerkat-Token", "")
        cookie = self.headers.get("Cookie", "")
        for part in cookie.split(";"):
            name, _, value = part.strip().partition("=")
            if name == self.server.cookie:
                given = given or value
        return hmac.compare_digest(given.encode(), token.encode())

    def _from_the_page(self) -> str | None:
        """Why a file-changing request is refused: not the page's own (cross-site), or no token in its header."""
        if not hmac.compare_digest(self.headers.get("X-Meerkat-Token", "").encode(), self.server.token.encode()):
            return "a request that changes files needs the page's token in its X-Meerkat-Token header"
        if self.headers.get("Content-Type", "").split(";")[0].strip() != "application/json":
            return "a request that changes files must send JSON"
        origin = self.headers.get("Origin")
        if origin is not None and origin != f"http://{self.headers.get('Host', '')}":
            return f"a request from another site ({origin}) may not change files"
        if self.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
            return "a request from another site may not change files"
        return None

    # --- routes ---------------------------------------------------------------------------------------

    def do_GET(self):  # noqa: N802 (the base class's name)
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if not self._token_ok(query):
            return self._refuse(HTTPStatus.FORBIDDEN, "open the URL with the token that `meerkat sort` printed")
        if "token" in query:  # keep it in a cookie, and out of the address bar and the history
            cookie = f"{self.server.cookie}={self.server.token}; HttpOnly; SameSite=Strict; Path=/"
            return self._send(
                HTTPStatus.SEE_OTHER,
                b"",
                "text/plain",
                {"Location": "/" + url.path.lstrip("/"), "Set-Cookie": cookie},  # never //other.host
            )
        path = unquote(url.path, errors="surrogateescape")
        session = self.server.session
        try:
            if path == "/":
                page = static("index.html").replace(b"{{TOKEN}}", self.server.token.encode())
                return self._send(HTTPStatus.OK, page, "text/html; charset=utf-8", {"Cache-Control": "no-store"})
            if path.startswith("/static/") and path[len("/static/") :] in STATIC:
                name = path[len("/static/") :]
                return self._send(HTTPStatus.OK, static(name), STATIC[name], {"Cache-Control": "no-cache"})
            if path == "/api/summary":
                with self.server.lock:
                    return self._json(HTTPStatus.OK, session.summary())
            if path == "/api/crops":
                with self.server.lock:
                    items = session.pending(query.get("order", ["uncertain"])[0])
                return self._json(HTTPStatus.OK, {"items": items})
            if path.startswith("/thumb/"):
                with self.server.lock:
                    crop = session.listed(path[len("/thumb/") :])
                found = thumbs.make(session.thumbs, session.root, crop)  # outside the lock: decoding takes time
                if found is None:
                    return self._refuse(HTTPStatus.UNPROCESSABLE_ENTITY, "this crop cannot be decoded")
                return self._file(*found, "private, max-age=86400")
            if path.startswith("/crop/"):
                with self.server.lock:
                    found = session.image(path[len("/crop/") :])
                return self._file(found, "application/octet-stream", "no-store")
        except Refused as e:
            return self._refuse(HTTPStatus.NOT_FOUND, str(e))
        except OSError as e:
            return self._refuse(HTTPStatus.NOT_FOUND, f"cannot be read ({e.strerror})")
        return self._refuse(HTTPStatus.NOT_FOUND, "no such page")

    def do_HEAD(self):  # noqa: N802
        return self.do_GET()

    def do_POST(self):  # noqa: N802
        url = urlsplit(self.path)
        if not self._token_ok({}):
            return self._refuse(HTTPStatus.FORBIDDEN, "open the URL with the token that `meerkat sort` printed")
        if why := self._from_the_page():
            return self._refuse(HTTPStatus.FORBIDDEN, why)
        try:
            length = int(self.headers.get("Content-Length", "0"))
            if not 0 <= length <= MAX_BODY:
                raise ValueError
            body = json.loads(self.rfile.read(length) or b"{}")
            if not isinstance(body, dict):
                raise ValueError
        except ValueError:
            return self._refuse(HTTPStatus.BAD_REQUEST, "the request is not a JSON object")
        session = self.server.session
        actions = {
            "/api/assign": lambda: session.assign(body.get("ids"), body.get("class")),
            "/api/accept": lambda: session.assign(body.get("ids")),
            "/api/skip": lambda: session.skip(body.get("ids")),
            "/api/undo": session.undo,
            "/api/class": lambda: session.add_class(body.get("name")),
        }
        if url.path not in actions:
            return self._refuse(HTTPStatus.NOT_FOUND, "no such action")
        try:
            with self.server.lock:
                return self._json(HTTPStatus.OK, actions[url.path]())
        except Refused as e:
            return self._refuse(HTTPStatus.CONFLICT, str(e))
        except OSError as e:
            return self._refuse(
                HTTPStatus.CONFLICT, f"the move failed: {e.strerror} ({atomic.shown(e.filename or '')})"
            )

    def do_PUT(self):  # noqa: N802
        self._refuse(HTTPStatus.METHOD_NOT_ALLOWED, "only GET and POST")

    do_DELETE = do_PATCH = do_OPTIONS = do_PUT  # no CORS preflight is ever granted


class SortServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, session: Session, host: str, port: int):
        self.session, self.token, self.lock = session, secrets.token_urlsafe(24), threading.Lock()
        if ":" in host:
            import socket

            self.address_family = socket.AF_INET6
        super().__init__((host, port), Handler)
        self.cookie = f"meerkat-sort-{self.server_address[1]}"  # cookies ignore the port: one a session

    def url(self, host: str) -> str:
        return f"{display_url(host, self.server_address[1])}?token={self.token}"

    def handle_error(self, request, client_address) -> None:
        """A page that went away mid-answer (a reload, a thumbnail scrolled past) prints no traceback."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            log.debug("%s went away: %s", client_address[0], sys.exc_info()[1])
            return
        super().handle_error(request, client_address)


def run_page(crops: Path, samples: Path, model: Path | None, host: str, port: int) -> None:
    """`meerkat sort`: the folders checked, the crops listed (and scored), then the page served."""
    check_apart(samples, [("CROPS", crops)], "SAMPLES")
    check_port(host, port, "meerkat sort")  # before a model scores the crops, which takes minutes
    session = Session(crops, samples, model)
    try:
        serve(session, host, port)
    finally:
        session.close()


def _thumbnails(session: Session, todo: list) -> None:
    try:
        thumbs.make_all(session.thumbs, session.root, todo)
    except Exception as e:  # the server stopping under it (no new work after shutdown): the page made the rest
        log.debug("thumbnails stopped: %s", e)


def serve(session: Session, host: str, port: int) -> None:
    """Serve the page until Ctrl-C or SIGTERM; thumbnails are made meanwhile, the page's order first."""
    check_port(host, port, "meerkat sort")
    server = SortServer(session, host, port)
    todo = [c for c in sorted(session.crops_list, key=session.order_key("uncertain")) if c.state == "pending"]
    threading.Thread(target=_thumbnails, args=(session, todo), daemon=True).start()
    where = (
        " (listening on all addresses: open it through the port -p published, or an SSH tunnel)"
        if host in WILDCARDS
        else ""
    )
    log.info("Sorting %d crops of %s into %s/Training: open %s%s ; Ctrl-C stops it",
             len(todo), session.crops, session.samples, server.url(host), where)  # fmt: skip
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # pid 1 of a container ignores it otherwise
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        log.info("Sorting stopped; next: meerkat run %s OUTPUT", session.samples)
