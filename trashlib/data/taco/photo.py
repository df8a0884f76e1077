"""One TACO photo into the competition's form: an upright size x size JPEG without EXIF, and its polygons
moved onto it (turned by EXIF when drawn on the stored grid, scaled, clipped), with area and bbox.

Resizing: a plain resize to a square, aspect ratio not kept, as the competition's 512x512 photos are;
every annotated object stays whole (a crop would cut some off, padding would add borders no competition
photo has). JPEG's DCT scaling (PIL's draft mode) decodes a 12-megapixel photo at 1/2..1/8 size first.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from pycocotools import mask as mask_utils

from trashlib.data.coco import MAX_IMAGE_SIDE
from trashlib.data.orientation import TRANSPOSE, annotation_grid, exif_orientation, to_upright, upright_size
from trashlib.data.taco.source import TacoPhoto
from trashlib.io import atomic_open

JPEG_QUALITY = 90


class PhotoError(ValueError):
    """A photo that cannot be used as annotated (another size, not an image, undecodable)."""


@dataclass(frozen=True)
class PhotoGrid:
    """How a photo file relates to its annotation: stored size, EXIF orientation, and the grid drawn on."""

    stored: tuple[int, int]
    orientation: int
    grid: str  # "displayed" or "stored"


def inspect_photo(path: Path, photo: TacoPhoto, *, decode: bool = False) -> PhotoGrid:
    """Read a photo file's header (and with `decode` all its pixels, cheaply); PhotoError when it is not
    an image, is damaged, or matches neither grid of the annotation's width x height."""
    try:
        with Image.open(path) as im:
            grid = _grid(im, photo)
            if decode:
                im.draft("RGB", (64, 64))
                im.load()
    except PhotoError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:  # PIL's ways of saying "not a photo"
        raise PhotoError(f"not a readable image ({type(e).__name__}: {e})") from None
    return grid


def _grid(im: Image.Image, photo: TacoPhoto) -> PhotoGrid:
    if max(im.size) > MAX_IMAGE_SIDE:
        raise PhotoError(f"file is {im.size[0]}x{im.size[1]}, larger than {MAX_IMAGE_SIDE} pixels a side")
    orientation = exif_orientation(im)
    grid = annotation_grid(im.size, orientation, (photo.width, photo.height))
    if grid is None:
        raise PhotoError(f"file is {im.size[0]}x{im.size[1]} (EXIF orientation {orientation}), the annotation says "
                         f"{photo.width}x{photo.height}: another photo, or another resolution of it")
    return PhotoGrid(im.size, orientation, grid)


def write_upright(path: Path, dest: Path, grid: PhotoGrid, *, size: int) -> None:
    """Decode, turn upright, resize to size x size and write `dest` as a JPEG without EXIF (atomically)."""
    try:
        with Image.open(path) as im:
            im.draft("RGB", (size, size))  # at least size x size, as few pixels as the JPEG allows
            rgb = im.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise PhotoError(f"cannot decode ({type(e).__name__}: {e})") from None
    if grid.orientation in TRANSPOSE:
        rgb = rgb.transpose(TRANSPOSE[grid.orientation])
    rgb = rgb.resize((size, size), Image.Resampling.LANCZOS)
    with atomic_open(dest, "wb") as f:
        rgb.save(f, "JPEG", quality=JPEG_QUALITY)


def upright_annotations(photo: TacoPhoto, grid: PhotoGrid, *, size: int) -> tuple[list[dict], int]:
    """([{category_id, segmentation, area, bbox, iscrowd}], annotations lost) on the size x size upright photo.

    An annotation is lost when resizing leaves it no pixel (a polygon of under a pixel, or one outside
    the photo).
    """
    upright = upright_size(*grid.stored, grid.orientation)
    sx, sy = size / upright[0], size / upright[1]
    out, lost = [], 0
    for category_id, polygons in photo.annotations:
        kept = []
        for poly in polygons:
            if grid.grid == "stored":
                poly = to_upright(list(poly), width=grid.stored[0], height=grid.stored[1],
                                  orientation=grid.orientation)
            scaled = [round(min(max(v * s, 0.0), size), 2) for v, s in zip(poly, (sx, sy) * (len(poly) // 2))]
            if len(set(zip(scaled[0::2], scaled[1::2]))) >= 3:
                kept.append(scaled)
        rle = mask_utils.merge(mask_utils.frPyObjects(kept, size, size)) if kept else None
        area = int(mask_utils.area(rle)) if rle is not None else 0
        if not area:
            lost += 1
            continue
        bbox = [round(float(v), 2) for v in mask_utils.toBbox(rle)]
        out.append({"category_id": category_id, "segmentation": kept, "area": area, "bbox": bbox, "iscrowd": 0})
    return out, lost

