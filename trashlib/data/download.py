"""Downloads over HTTP(S): a timeout per request, retries with backoff, and a file that appears only when whole.

`fetch(url, dest)` writes the body beside `dest` under a temporary name (`trashlib.io.atomic_open`) and
renames it only after every byte the server announced has arrived and `check` accepted it, so an
interrupted or truncated download never counts as a file. Failures that a retry cannot mend (404, a web
page where an image was expected, a body `check` refuses) fail at once; timeouts, dropped connections,
truncated bodies and server errors are retried.
"""
from __future__ import annotations

import http.client
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable

from trashlib.io import atomic_open

USER_AGENT = "trashlib (+https://github.com/pedropro/TACO data conversion)"
_CHUNK = 1 << 16
_RETRY_STATUS = {408, 429, 500, 502, 503, 504}


class FetchError(Exception):
    """A download that failed; `reason` is a short sentence for the summary, `permanent` when retrying is futile."""

    def __init__(self, reason: str, *, permanent: bool = False):
        super().__init__(reason)
        self.reason, self.permanent = reason, permanent


def check_url(url) -> str:
    """The URL if it is an absolute http(s) URL with a host; FetchError (permanent) otherwise."""
    parts = urllib.parse.urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise FetchError(f"not an http(s) URL: {url!r}", permanent=True)
    return url


def _fetch_once(url: str, dest: Path, *, timeout: float, content_type, check) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            kind = response.headers.get_content_type()
            if content_type is not None and not kind.startswith(content_type):
                wanted = " or ".join(f"{t}*" for t in ((content_type,) if isinstance(content_type, str) else content_type))
                raise FetchError(f"content type {kind}, not {wanted}", permanent=True)
            expected = response.headers.get("Content-Length")
            got = 0
            with atomic_open(dest, "wb") as f:
                while chunk := response.read(_CHUNK):
                    f.write(chunk)
                    got += len(chunk)
                if expected is not None and expected.isdigit() and got != int(expected):
                    raise FetchError(f"truncated: {got} of {expected} bytes")
                f.flush()
                if check is not None:
                    check(Path(f.name))  # raises FetchError: the temporary file is removed, nothing counts
    except urllib.error.HTTPError as e:
        raise FetchError(f"HTTP {e.code} {e.reason}", permanent=e.code not in _RETRY_STATUS) from None
    except http.client.IncompleteRead as e:
        raise FetchError(f"truncated: {len(e.partial)} bytes, then the connection closed") from None
    except (socket.timeout, TimeoutError):
        raise FetchError(f"timed out after {timeout:g} s") from None
    except urllib.error.URLError as e:
        reason = e.reason
        if isinstance(reason, (socket.timeout, TimeoutError)):
            raise FetchError(f"timed out after {timeout:g} s") from None
        raise FetchError(f"cannot connect: {getattr(reason, 'strerror', None) or reason}") from None
    except (http.client.HTTPException, ConnectionError) as e:
        raise FetchError(f"connection failed: {type(e).__name__}: {e}") from None


def fetch(url: str, dest: str | Path, *, timeout: float = 30.0, retries: int = 3, backoff: float = 1.0,
          content_type: str | tuple[str, ...] | None = None, check: Callable[[Path], None] | None = None,
          sleep: Callable[[float], None] = time.sleep) -> Path:
    """Download `url` to `dest` atomically; returns `dest`, or raises FetchError with the last reason.

    `content_type`: required prefix(es) of the response's type (e.g. "image/"); `check(path)` may raise
    FetchError to refuse the body. Up to `retries` more tries after a transient failure, waiting
    backoff, 2*backoff, 4*backoff... seconds in between.
    """
    check_url(url)
    dest = Path(dest)
    attempt = 0
    while True:
        try:
            _fetch_once(url, dest, timeout=timeout, content_type=content_type, check=check)
            return dest
        except FetchError as e:
            if e.permanent or attempt == retries:
                tries = f" (after {attempt + 1} tries)" if attempt else ""
                raise FetchError(e.reason + tries, permanent=e.permanent) from None
        sleep(backoff * 2 ** attempt)
        attempt += 1
