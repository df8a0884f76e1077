"""Image files: decode to (H, W, 3) uint8 RGB, with errors naming the JSON file and the image id."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from trashlib.data.coco import DatasetError, Problem


def read_image(path: str | Path, *, width: int | None = None, height: int | None = None,
               file: str = "", item: str | None = None) -> np.ndarray:
    """Decode an image file to (H, W, 3) uint8 RGB; DatasetError if missing, corrupt or of another size."""
    path = Path(path)
    where = file or str(path)
    try:
        buf = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise DatasetError([Problem(where, item, f"image file {path} is missing")]) from None
    except OSError as e:
        raise DatasetError([Problem(where, item, f"image file {path} cannot be read: {e.strerror or e}")]) from None
    if buf.size == 0:  # OpenCV answers an empty buffer with an assertion error, not None
        raise DatasetError([Problem(where, item, f"image file {path} is empty (0 bytes)")])
    # OpenCV < 5 decodes a truncated JPEG with only a warning; a JPEG must hold its EOI marker.
    # Damage in the middle is only a libjpeg warning on stderr: `data check` listens for it, training does not.
    truncated = _jpeg_truncated(buf.tobytes())
    image = None if truncated else _decode(buf)
    if image is None:
        what = "truncated" if truncated else "corrupt or not an image"
        raise DatasetError([Problem(where, item, f"image file {path} is {what} ({buf.size} bytes)")])
    if (width is not None and image.shape[1] != width) or (height is not None and image.shape[0] != height):
        raise DatasetError([Problem(where, item, f"image file {path} is {image.shape[1]}x{image.shape[0]}, "
                                                 f"the JSON says {width}x{height}")])
    return image


def _jpeg_truncated(data: bytes) -> bool:
    """Whether a JPEG file ends before its end-of-image marker (EOI, FF D9); False for other formats.

    The header segments are stepped over by their lengths up to the first start of scan (SOS), so an
    EXIF thumbnail's own EOI is not taken for the image's. After it, FF D9 can only be the EOI (the
    compressed data stuffs every FF byte), wherever it lies: bytes after it (a phone's trailer, a
    motion photo's video) do not make a whole file truncated.
    """
    if not data.startswith(b"\xff\xd8"):
        return False
    pos = 2
    while pos + 4 <= len(data):
        marker = data[pos + 1]
        if data[pos] != 0xFF or marker == 0xD9:  # not a marker, or an end before any scan: the decoder judges it
            return False
        if marker == 0xFF:  # fill byte
            pos += 1
        elif marker == 0xDA:
            return data.rfind(b"\xff\xd9", pos + 2) < 0
        elif 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
            pos += 2
        else:
            pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
    return True  # cut off inside the headers


def _decode(buf: np.ndarray) -> np.ndarray | None:
    # stored pixels, as COCO annotates them (PIL ignores EXIF orientation too)
    flags = cv2.IMREAD_IGNORE_ORIENTATION
    try:
        if hasattr(cv2, "IMREAD_COLOR_RGB"):  # OpenCV >= 4.11 converts inside the decoder: no extra copy
            return cv2.imdecode(buf, cv2.IMREAD_COLOR_RGB | flags)
        image = cv2.imdecode(buf, cv2.IMREAD_COLOR | flags)
    except cv2.error:  # e.g. a header claiming more pixels than OpenCV's limit
        return None
    return None if image is None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
