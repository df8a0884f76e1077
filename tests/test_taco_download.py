"""Downloads for `data taco`, offline: a local HTTP server on 127.0.0.1 serves photos made here and fails on purpose
(404, a truncated body, a stall past the timeout, a web page, a body that is no image, a server error), then
heals; the build leaves each failure out with its reason and a second run, also after a kill, fetches the rest."""
from __future__ import annotations

import collections
import csv
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from test_taco import box, taco_file
from trashlib.data.check import check_dataset
from trashlib.data.download import FetchError, fetch
from trashlib.data.taco.build import ORIGINALS, build_taco

ROOT = Path(__file__).resolve().parents[1]


def jpeg(size=(48, 32), colour=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    pixels = np.full((size[1], size[0], 3), 110, np.uint8)
    pixels[4:20, 6:30] = colour
    Image.fromarray(pixels).save(buf, "JPEG", quality=95)
    return buf.getvalue()


class Server:
    """Routes: path -> (status, content type, body, how); `how` is "ok", "truncated" or "stall". `healed` serves
    every path as "ok" from its `good` body. `hits` counts the requests per path."""

    def __init__(self):
        self.routes: dict[str, tuple] = {}
        self.good: dict[str, bytes] = {}
        self.hits: collections.Counter = collections.Counter()
        self.healed = False
        self.release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.hits[self.path] += 1
                if self.path not in server.routes:
                    self.send_error(404)
                    return
                status, kind, body, how = server.routes[self.path]
                if server.healed and self.path in server.good:
                    status, kind, body, how = 200, "image/jpeg", server.good[self.path], "ok"
                if status != 200:
                    self.send_error(status)
                    return
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body) + (1000 if how == "truncated" else 0)))
                self.end_headers()
                if how == "stall":
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    server.release.wait(20)
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def photo(self, path: str, how: str = "ok", *, status=200, kind="image/jpeg", body=None, size=(48, 32)) -> str:
        self.good[path] = jpeg()  # what a healed server sends: the photo at its annotated size
        self.routes[path] = (status, kind, jpeg(size) if body is None else body, how)
        return self.url + path

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file())


# -- fetch ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("how, kw, reason, tries", [
    ("404", dict(status=404), "HTTP 404", 1),
    ("truncated", {}, "truncated: ", 2),
    ("stall", {}, "timed out after 0.3 s (after 2 tries)", 2),
    ("html", dict(kind="text/html", body=b"<html>sign in</html>"), "content type text/html, not image/*", 1),
    ("503", dict(status=503), "HTTP 503 Service Unavailable (after 2 tries)", 2),
])
@pytest.mark.integration
def test_fetch_failures_leave_no_file(server, tmp_path, how, kw, reason, tries):
    url = server.photo(f"/{how}.jpg", how if how in ("truncated", "stall") else "ok", **kw)
    dest = tmp_path / "dl" / "x.jpg"
    with pytest.raises(FetchError) as e:
        fetch(url, dest, timeout=0.3, retries=1, backoff=0, content_type="image/")
    assert reason in e.value.reason
    assert server.hits[f"/{how}.jpg"] == tries
    assert leftovers(tmp_path) == []  # neither the file nor a temporary one


def test_fetch_retries_with_backoff_then_succeeds(server, tmp_path):
    url = server.photo("/flaky.jpg", status=503)
    waits = []

    def sleep(seconds):
        waits.append(seconds)
        server.healed = len(waits) == 2  # the third try succeeds

    dest = fetch(url, tmp_path / "x.jpg", retries=3, backoff=0.5, sleep=sleep)
    assert waits == [0.5, 1.0] and dest.read_bytes() == server.good["/flaky.jpg"]


def test_fetch_refuses_bad_urls_and_bodies_its_check_refuses(server, tmp_path):
    for url in ("ftp://example.org/x.jpg", "not a url", None, "http:///x"):
        with pytest.raises(FetchError, match="not an http\\(s\\) URL"):
            fetch(url, tmp_path / "x.jpg")

    def refuse(path):
        raise FetchError(f"only {path.stat().st_size} bytes", permanent=True)

    with pytest.raises(FetchError, match="only \\d+ bytes"):
        fetch(server.photo("/ok.jpg"), tmp_path / "x.jpg", check=refuse)
    assert leftovers(tmp_path) == []


# -- the build over HTTP -----------------------------------------------------------------------------
FAILING = {  # file -> (how the server fails, the reason the summary gives)
    "batch_9/missing.jpg": (dict(status=404), "HTTP 404"),
    "batch_9/truncated.jpg": (dict(how="truncated"), "truncated"),
    "batch_9/stalled.jpg": (dict(how="stall"), "timed out"),
    "batch_9/page.jpg": (dict(kind="text/html", body=b"<html></html>"), "content type text/html"),
    "batch_9/garbage.jpg": (dict(body=b"\xff\xd8 this is no JPEG"), "not a readable image"),
    "batch_9/other-size.jpg": (dict(size=(64, 64)), "file is 64x64 (EXIF orientation 1), the annotation says 48x32"),
}


def served_taco(server: Server, *, n_good: int = 9, stall_at: str | None = None) -> None:
    """TACO's annotation file on the server, naming photos that it serves (or fails to)."""
    photos = []
    for i in range(n_good):
        name = f"batch_1/{i:06d}.jpg"
        how = "stall" if name == stall_at else "ok"
        cat = ("Drink can", "Glass bottle", "Battery")[i % 3]
        photos.append(dict(id=i, file_name=name, width=48, height=32, url=server.photo(f"/p/{i}.jpg", how),
                           anns=[(cat, box(6, 4, 30, 20))]))
    for k, (name, (kw, _)) in enumerate(FAILING.items() if stall_at is None else ()):
        kw = dict(kw)
        photos.append(dict(id=100 + k, file_name=name, width=48, height=32, url=server.photo(f"/f/{k}.jpg", **kw),
                           anns=[("Drink can", box(6, 4, 30, 20))]))
    if stall_at is None:
        photos.append(dict(id=200, file_name="batch_9/bad-url.jpg", width=48, height=32, url="ftp://example.org/x.jpg",
                           anns=[]))
    body = json.dumps(taco_file(photos)).encode()
    server.routes["/data/annotations.json"] = (200, "text/plain; charset=utf-8", body, "ok")


@pytest.mark.integration
def test_build_leaves_out_each_failure_with_its_reason_then_resumes(server, tmp_path):
    served_taco(server)
    out = tmp_path / "taco"
    build = build_taco(out, source=server.url, workers=4, size=64, timeout=0.5, retries=1, backoff=0, progress=False)
    assert sorted(o.file_name for o in build.used) == [f"batch_1/{i:06d}.jpg" for i in range(9)]
    reasons = {o.file_name: o.reason for o in build.failed}
    for name, (_, reason) in FAILING.items():
        assert reason in reasons[name], (name, reasons[name])
    assert "not an http(s) URL" in reasons["batch_9/bad-url.jpg"]
    with open(out / "failed.csv", newline="") as f:
        assert {r["file_name"]: r["reason"] for r in csv.DictReader(f)} == reasons
    summary = build.summary()
    assert "9 photos" in summary and "7 photos left out" in summary and "1 x download failed: HTTP 404" in summary
    assert check_dataset(out) == []
    assert not any(p.name.startswith(".") and p.name.endswith(".tmp") for p in out.rglob("*"))
    assert leftovers(out / ORIGINALS / "batch_9") == []  # nothing of a failed download counts
    kept = {p: p.stat().st_mtime_ns for p in (out / ORIGINALS).rglob("*.jpg")}
    assert len(kept) == 9

    server.healed, server.hits = True, collections.Counter()
    again = build_taco(out, source=server.url, workers=4, size=64, timeout=0.5, retries=1, backoff=0, progress=False)
    assert len(again.used) == 15 and [o.file_name for o in again.failed] == ["batch_9/bad-url.jpg"]
    assert not any(server.hits[f"/p/{i}.jpg"] for i in range(9)) and server.hits["/data/annotations.json"] == 0
    assert all(server.hits[f"/f/{k}.jpg"] == 1 for k in range(len(FAILING)))
    assert {p: p.stat().st_mtime_ns for p in kept} == kept
    assert check_dataset(out) == []


@pytest.mark.integration
def test_a_killed_build_resumes(server, tmp_path):
    served_taco(server, stall_at="batch_1/000003.jpg")
    out = tmp_path / "taco"
    script = (f"from trashlib.data.taco import build_taco; build_taco({str(out)!r}, source={server.url!r}, workers=1, "
              f"size=64, timeout=60, progress=False)")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", script], env=env)
    try:
        deadline = time.monotonic() + 20
        partial = []
        while time.monotonic() < deadline and not partial:
            partial = [p for p in (out / ORIGINALS).rglob(".000003.jpg.*.tmp")] if (out / ORIGINALS).is_dir() else []
            time.sleep(0.05)
        assert partial, "the build never reached the stalled photo"
        assert proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    done = sorted(p.name for p in (out / ORIGINALS / "batch_1").glob("*.jpg"))
    assert done == ["000000.jpg", "000001.jpg", "000002.jpg"]  # the stalled one only as a temporary file
    assert not (out / "train.json").exists()  # no half-written dataset
    server.healed, server.hits = True, collections.Counter()
    build = build_taco(out, source=server.url, workers=2, size=64, timeout=2, retries=0, progress=False)
    assert len(build.used) == 9 and not build.failed
    assert [server.hits[f"/p/{i}.jpg"] for i in range(9)] == [0, 0, 0] + [1] * 6
    assert not list(out.rglob("*.tmp")) and check_dataset(out) == []
