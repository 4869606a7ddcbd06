"""`meerkat sort`'s server refuses what a page of another site, another user of the machine or a
crafted URL could ask, and changes no file when it does: the real server over real HTTP."""

import http.client
import json
import os
import re
import subprocess
import threading
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import ROOT, write_image

from meerkat.sort.server import SortServer
from meerkat.sort.session import Session

MEERKAT = str(ROOT / ".venv" / "bin" / "meerkat")
SECRET = b"the outside file's bytes, never served"


def tree(root: Path) -> dict[str, bytes | str]:
    """Every file and link below `root` with its bytes (a link: where it leads), thumbnails left out."""
    found = {}
    for top, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != "thumbs"]
        for name in dirs + files:
            path = Path(top, name)
            rel = str(path.relative_to(root))
            if path.is_symlink():
                found[rel] = "-> " + os.readlink(path)
            elif path.is_file():
                found[rel] = path.read_bytes()
            else:
                found[rel] = "dir"
    return found


class Served:
    def __init__(self, tmp_path: Path):
        self.tmp = tmp_path
        self.crops, self.samples, self.outside = tmp_path / "crops", tmp_path / "samples", tmp_path / "outside"
        for i in range(3):
            write_image(self.crops / "v1" / f"a{i}.jpg", seed=i)
        write_image(self.crops / "v2" / "a0.jpg", seed=9)
        (self.crops / "v2" / "empty.jpg").write_bytes(b"")  # a crop cut short: no thumbnail, but no crash
        self.outside.mkdir()
        (self.outside / "secret.jpg").write_bytes(SECRET)
        os.symlink(self.outside / "secret.jpg", self.crops / "v1" / "link.jpg")
        os.symlink(self.outside, self.crops / "linked")
        write_image(self.samples / "Training" / "deer" / "user.jpg", seed=5)
        os.symlink(self.outside, self.samples / "Training" / "elsewhere")
        self.session = Session(self.crops, self.samples)
        self.server = SortServer(self.session, "127.0.0.1", 0)
        self.port, self.token = self.server.server_address[1], self.server.token
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.cookie = f"{self.server.cookie}={self.token}"
        self.before = tree(tmp_path)

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.session.close()

    def request(self, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers or {})  # the path goes out as given
            response = conn.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            conn.close()

    def page(self, method, path, body=None, **headers):
        """A request as the page makes it: the cookie, and for a POST its JSON with the token header."""
        headers = {"Cookie": self.cookie, **headers}
        if body is not None:
            body = json.dumps(body)
            headers = {"Content-Type": "application/json", "X-Meerkat-Token": self.token, **headers}
        return self.request(method, path, body, {k.replace("_", "-"): v for k, v in headers.items() if v is not None})

    def ids(self) -> dict[str, int]:
        status, _, body = self.page("GET", "/api/crops?order=name")
        assert status == 200
        return {item["name"]: item["id"] for item in json.loads(body)["items"]}

    def unchanged(self):
        assert tree(self.tmp) == self.before


@pytest.fixture
def served(tmp_path):
    s = Served(tmp_path)
    yield s
    s.close()


def refused(status, headers, body, codes=(403,)):
    assert status in codes
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["error"]
    assert SECRET not in body


def other(token: str) -> str:
    """A token one letter off."""
    return token[:-1] + ("y" if token.endswith("x") else "x")


GETS = ["/", "/api/crops", "/api/summary", "/static/sort.js", "/thumb/v1/a0.jpg?k=1", "/crop/v1/a0.jpg"]


@pytest.mark.parametrize("path", GETS)
@pytest.mark.parametrize("how", ["none", "query", "cookie", "header", "other port's cookie"])
def test_a_get_without_the_right_token_is_refused(served, path, how):
    wrong = other(served.token)
    headers = {
        "none": {},
        "query": {},
        "cookie": {"Cookie": f"{served.server.cookie}={wrong}"},
        "header": {"X-Meerkat-Token": wrong},
        "other port's cookie": {"Cookie": f"meerkat-sort-1={served.token}"},
    }[how]
    if how == "query":
        path += ("&" if "?" in path else "?") + "token=" + wrong
    status, headers, body = served.request("GET", path, headers=headers)
    refused(status, headers, body)
    assert b"JFIF" not in body and served.token.encode() not in body
    served.unchanged()


@pytest.mark.parametrize("how", ["none", "wrong"])
def test_a_post_without_the_right_token_moves_nothing(served, how):
    ids = served.ids()
    token = "" if how == "none" else other(served.token)
    body = json.dumps({"ids": [ids["v1/a0.jpg"]], "class": "deer"})
    headers = {
        "Content-Type": "application/json",
        "X-Meerkat-Token": token,
        "Cookie": f"{served.server.cookie}={token}",
    }
    for path in ("/api/assign", "/api/accept", "/api/skip", "/api/undo", "/api/class"):
        refused(*served.request("POST", path, body, {k: v for k, v in headers.items() if v}))
    served.unchanged()
    assert not (served.samples / "meerkat-sort" / "moves.jsonl").exists()


def test_the_token_in_the_url_becomes_a_strict_http_only_cookie(served):
    status, headers, body = served.request("GET", f"/?token={served.token}")
    assert status == 303 and headers["location"] == "/"
    cookie = headers["set-cookie"]
    assert cookie.startswith(f"meerkat-sort-{served.port}={served.token};")
    attributes = {a.strip().lower() for a in cookie.split(";")[1:]}
    assert {"httponly", "samesite=strict"} <= attributes
    name_value = cookie.split(";")[0]

    status, headers, body = served.request("GET", "/", headers={"Cookie": name_value})
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert f'<meta name="meerkat-token" content="{served.token}">'.encode() in body
    status, _, body = served.request("GET", "/api/crops", headers={"Cookie": f"other=1; {name_value}"})
    assert status == 200 and len(json.loads(body)["items"]) == 5

    status, headers, _ = served.request("GET", f"/crop/v1/a0.jpg?token={served.token}")
    assert status == 303 and headers["location"] == "/crop/v1/a0.jpg"
    # `//host/` would be a link to another site: the redirect stays on this one
    status, headers, _ = served.request("GET", f"//evil.example/?token={served.token}")
    assert status == 303 and headers["location"] == "/evil.example/"
    served.unchanged()


def test_the_page_s_own_post_moves_the_crop(served):
    """The control for the refusals below: the same request with the page's headers does move it."""
    status, _, body = served.page("POST", "/api/assign", {"ids": [served.ids()["v1/a0.jpg"]], "class": "deer"})
    assert status == 200, body
    assert json.loads(body)["moved"][0]["to"] == "Training/deer/a0.jpg"
    assert not (served.crops / "v1" / "a0.jpg").exists()
    assert (served.samples / "Training" / "deer" / "a0.jpg").read_bytes() == served.before["crops/v1/a0.jpg"]


CROSS_SITE = {
    "a form (cookie only, no token header)": {"X-Meerkat-Token": None},
    "text/plain": {"Content-Type": "text/plain"},
    "a urlencoded form": {"Content-Type": "application/x-www-form-urlencoded"},
    "a multipart form": {"Content-Type": "multipart/form-data; boundary=x"},
    "another Origin": {"Origin": "http://evil.example"},
    "a null Origin": {"Origin": "null"},
    "another port's Origin": {"Origin": "http://127.0.0.1:1"},
    "Sec-Fetch-Site: cross-site": {"Sec-Fetch-Site": "cross-site"},
    "Sec-Fetch-Site: same-site": {"Sec-Fetch-Site": "same-site"},
}


@pytest.mark.parametrize("headers", CROSS_SITE.values(), ids=CROSS_SITE.keys())
def test_a_cross_site_post_is_refused_and_moves_nothing(served, headers):
    ids = served.ids()
    for path, body in [
        ("/api/assign", {"ids": [ids["v1/a0.jpg"]], "class": "deer"}),
        ("/api/class", {"name": "moose"}),
        ("/api/skip", {"ids": [ids["v1/a1.jpg"]]}),
    ]:
        refused(*served.page("POST", path, body, **headers))
    served.unchanged()
    assert not (served.samples / "meerkat-sort" / "moves.jsonl").exists()


@pytest.mark.parametrize("method", ["OPTIONS", "PUT", "DELETE", "PATCH"])
def test_other_methods_are_refused_and_no_cors_is_ever_granted(served, method):
    preflight = {"Origin": "http://evil.example", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "x-meerkat-token, content-type"}  # fmt: skip
    for path in ("/api/assign", "/", "/crop/v1/a0.jpg"):
        status, headers, body = served.page(method, path, {"ids": [0], "class": "deer"}, **preflight)
        refused(status, headers, body, codes=(405,))
        assert not [h for h in headers if h.startswith("access-control-")]
    served.unchanged()


def test_no_answer_grants_cors(served):
    for method, path, body in [("GET", "/", None), ("GET", "/api/crops", None), ("POST", "/api/skip", {"ids": []})]:
        _, headers, _ = served.page(method, path, body, Origin="http://evil.example")
        assert not [h for h in headers if h.startswith("access-control-")]


OUTSIDE = [
    "../outside/secret.jpg",  # sent raw: http.client leaves the dots alone
    "v1/../../outside/secret.jpg",
    "%2e%2e/outside/secret.jpg",
    ".%2E/outside/secret.jpg",
    "v1%2F..%2F..%2Foutside%2Fsecret.jpg",
    "..%2Foutside%2Fsecret.jpg",
    "%252e%252e/outside/secret.jpg",
    "%252e%252e%252foutside%252fsecret.jpg",
    "ABSOLUTE",  # the outside file's absolute path: /crop//tmp/.../secret.jpg
    "%2F/etc/passwd",
    "/etc/passwd",
    "v1/a0.jpg%00",
    "v1/a0.jpg%00.png",
    "%00/../outside/secret.jpg",
    "v1/link.jpg",  # a link among the crops, to the outside file
    "linked/secret.jpg",  # a linked sub-folder
    "./v1/a0.jpg",
    "v1//a0.jpg",
    "v1/a0.jpg/",
    "v1\\..\\..\\outside\\secret.jpg",
    "../samples/Training/deer/user.jpg",  # SAMPLES
    "..%2Fsamples%2Fmeerkat-sort%2Fmoves.jsonl",  # the state folder
    "../samples/meerkat-sort/.meerkat.lock",
    "v1/not-there.jpg",
    "v1",
    "",
]


@pytest.mark.parametrize("kind", ["thumb", "crop"])
@pytest.mark.parametrize("rel", OUTSIDE)
def test_a_path_that_is_no_listed_crop_is_refused(served, kind, rel):
    rel = rel.replace("ABSOLUTE", str(served.outside / "secret.jpg"))
    status, headers, body = served.page("GET", f"/{kind}/{rel}")
    refused(status, headers, body, codes=(403, 404))
    assert b"JFIF" not in body
    served.unchanged()


def test_links_among_the_crops_are_not_listed(served):
    status, _, body = served.page("GET", "/api/summary")
    left_out = dict(json.loads(body)["left_out"])
    assert "never followed" in left_out["v1/link.jpg"] and "never followed" in left_out["linked"]
    assert sorted(served.ids()) == ["v1/a0.jpg", "v1/a1.jpg", "v1/a2.jpg", "v2/a0.jpg", "v2/empty.jpg"]


def test_a_crop_that_cannot_be_decoded_gets_an_error_not_a_dropped_connection(served):
    status, headers, body = served.page("GET", "/thumb/v2/empty.jpg?k=1")
    assert status == 422 and json.loads(body)["error"]
    assert served.page("GET", "/thumb/v1/a0.jpg?k=1")[0] == 200


def test_a_crop_moved_already_is_no_longer_served(served):
    ids = served.ids()
    status, _, _ = served.page("POST", "/api/assign", {"ids": [ids["v1/a0.jpg"]], "class": "deer"})
    assert status == 200
    for kind in ("thumb", "crop"):
        refused(*served.page("GET", f"/{kind}/v1/a0.jpg"), codes=(404,))
    write_image(served.crops / "v1" / "a0.jpg", seed=77)  # a new file at its old name: not listed
    refused(*served.page("GET", "/crop/v1/a0.jpg"), codes=(404,))


def test_a_page_that_goes_away_mid_answer_prints_no_traceback(served, capsys):
    """Browsers drop the requests of images no longer shown: the terminal stays quiet."""
    for error in (BrokenPipeError(32, "Broken pipe"), ConnectionResetError(104, "Connection reset by peer")):
        try:
            raise error
        except ConnectionError:
            served.server.handle_error(None, ("127.0.0.1", 1))
    assert capsys.readouterr().err == ""


BAD_CLASSES = [
    "../x",
    "a/b",
    "a\\b",
    ".hidden",
    "",
    "   ",
    "DEER",
    "Deer",
    "x" * 200,
    "é" * 60,
    "a\x00b",
    "a\nb",
    5,
    None,
]


@pytest.mark.parametrize("name", BAD_CLASSES, ids=[repr(n)[:20] for n in BAD_CLASSES])
def test_a_class_name_that_is_no_plain_new_folder_is_refused(served, name):
    status, headers, body = served.page("POST", "/api/class", {"name": name})
    refused(status, headers, body, codes=(409,))
    served.unchanged()


def test_a_class_folder_that_is_a_link_is_never_written_through(served):
    ids = served.ids()
    refused(*served.page("POST", "/api/class", {"name": "elsewhere"}), codes=(409,))
    refused(*served.page("POST", "/api/assign", {"ids": [ids["v1/a0.jpg"]], "class": "elsewhere"}), codes=(409,))
    status, _, body = served.page("GET", "/api/summary")
    summary = json.loads(body)
    assert [c["name"] for c in summary["classes"]] == ["deer"]
    assert any("elsewhere is a link" in p for p in summary["problems"])
    assert os.listdir(served.outside) == ["secret.jpg"]
    assert (served.crops / "v1" / "a0.jpg").is_file()


def test_a_class_folder_made_by_hand_meanwhile_is_one_a_new_class_may_not_clash_with(served):
    (served.samples / "Training" / "Elk").mkdir()
    refused(*served.page("POST", "/api/class", {"name": "elk"}), codes=(409,))
    assert sorted(os.listdir(served.samples / "Training")) == ["Elk", "deer", "elsewhere"]
    status, _, _ = served.page("POST", "/api/class", {"name": "Elk"})  # the folder as it is: taken as a class
    assert status == 200


class Scripts(HTMLParser):
    def __init__(self):
        super().__init__()
        self.scripts, self.inline, self.handlers, self.styles = [], [], [], []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.handlers += [(tag, a) for a in attrs if a.startswith("on")]
        self.styles += [tag] if tag == "style" or "style" in attrs else []
        self.handlers += [(tag, a) for a, v in attrs.items() if v and v.strip().lower().startswith("javascript:")]
        if tag == "script":
            self.scripts.append(attrs.get("src"))
            self._in_script = True

    def handle_endtag(self, tag):
        self._in_script = self._in_script and tag != "script"

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.inline.append(data)


def test_the_page_has_a_strict_csp_and_no_inline_script(served):
    status, headers, body = served.page("GET", "/")
    assert status == 200
    csp = {d.split()[0]: d.split()[1:] for d in headers["content-security-policy"].split(";") if d.strip()}
    assert csp["default-src"] == ["'none'"] and csp["script-src"] == ["'self'"] and csp["style-src"] == ["'self'"]
    assert csp["form-action"] == ["'none'"] and csp["frame-ancestors"] == ["'none'"]
    assert "unsafe" not in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    page = Scripts()
    page.feed(body.decode())
    assert page.scripts == ["/static/sort.js"] and not page.inline and not page.handlers and not page.styles
    for src in page.scripts:
        status, headers, _ = served.page("GET", src)
        assert status == 200 and headers["content-type"].startswith("text/javascript")


# --- through the command line ------------------------------------------------------------------------

URL = re.compile(r"open (http://\S+)")


def start(crops, samples, *extra):
    """`meerkat sort` in a subprocess, once it prints its URL: (process, URL)."""
    proc = subprocess.Popen(
        [MEERKAT, "sort", str(crops), str(samples), "--port", "0", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # the URL is logged on stdout, errors on stderr: read both
        text=True,
    )
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if found := URL.search(line):
            url = found.group(1)
            token = url.split("token=")[1]
            assert fetch(url, "/api/summary", {"X-Meerkat-Token": token})[0] == 200  # serving, SIGTERM handled
            return proc, url
    proc.wait(10)
    pytest.fail(f"meerkat sort printed no URL: {''.join(lines)}")


def stop(proc):
    """SIGTERM (as `docker stop` sends; SIGINT may be ignored where the tests run in the background)."""
    proc.terminate()
    try:
        output, _ = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return proc.returncode, output


def fetch(url, path, headers=None):
    host, port = re.match(r"http://([^:/]+):(\d+)/", url).groups()
    conn = http.client.HTTPConnection("127.0.0.1" if host == "localhost" else host, int(port), timeout=10)
    conn.request("GET", path, headers=headers or {})
    response = conn.getresponse()
    return response.status, response.read()


@pytest.fixture
def folders(tmp_path):
    crops = tmp_path / "crops"
    for i in range(2):
        write_image(crops / "v1" / f"a{i}.jpg", seed=i)
    return crops, tmp_path / "samples"


def test_listening_on_all_addresses_prints_localhost_and_still_needs_the_token(folders):
    proc, url = start(*folders, "--host", "0.0.0.0")
    try:
        assert re.fullmatch(r"http://localhost:\d+/\?token=[\w-]{20,}", url)
        token = url.split("token=")[1]
        status, body = fetch(url, "/api/crops")
        assert status == 403 and json.loads(body)["error"]
        assert fetch(url, "/", {"X-Meerkat-Token": token})[0] == 200
        assert fetch(url, f"/?token={token}")[0] == 303
    finally:
        code, err = stop(proc)
    assert code == 0 and "Traceback" not in err


def one_line_error(result):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def sort_cli(crops, samples, timeout=30):
    return subprocess.run(
        [MEERKAT, "sort", str(crops), str(samples), "--port", "0"], capture_output=True, text=True, timeout=timeout
    )


def test_a_missing_crops_folder_is_one_line_and_writes_nothing(tmp_path):
    line = one_line_error(sort_cli(tmp_path / "nope", tmp_path / "samples"))
    assert "nope" in line and "not found" in line
    assert os.listdir(tmp_path) == []


def test_samples_and_crops_inside_each_other_are_refused_in_one_line(folders, tmp_path):
    crops, _ = folders
    before = tree(tmp_path)
    assert "SAMPLES" in one_line_error(sort_cli(crops, crops / "samples"))
    (tmp_path / "outer" / "crops").mkdir(parents=True)
    write_image(tmp_path / "outer" / "crops" / "x.jpg")
    before = tree(tmp_path)
    assert "lies inside SAMPLES" in one_line_error(sort_cli(tmp_path / "outer" / "crops", tmp_path / "outer"))
    assert tree(tmp_path) == before


def test_a_training_folder_that_is_a_link_is_refused_in_one_line(folders, tmp_path):
    crops, samples = folders
    (tmp_path / "elsewhere").mkdir()
    samples.mkdir(exist_ok=True)
    os.symlink(tmp_path / "elsewhere", samples / "Training")
    assert "Training is a link" in one_line_error(sort_cli(crops, samples))
    assert os.listdir(tmp_path / "elsewhere") == []


def test_a_state_folder_that_is_not_meerkat_s_is_refused_and_left_alone(folders):
    crops, samples = folders
    (samples / "meerkat-sort").mkdir(parents=True)
    (samples / "meerkat-sort" / "notes.txt").write_text("mine")
    line = one_line_error(sort_cli(crops, samples))
    assert "meerkat-sort" in line and "not meerkat's" in line
    assert os.listdir(samples / "meerkat-sort") == ["notes.txt"]


@pytest.mark.slow
def test_a_second_session_is_refused_while_one_runs_but_not_after_a_kill(folders):
    crops, samples = folders
    first, _ = start(crops, samples)
    try:
        line = one_line_error(sort_cli(crops, samples))
        assert "in use" in line and str(first.pid) in line
    finally:
        first.kill()  # SIGKILL: no cleanup, the lock file stays behind
        first.communicate(timeout=20)
    again, url = start(crops, samples)
    code, err = stop(again)
    assert code == 0 and "Traceback" not in err
