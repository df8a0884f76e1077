"""Checks of one COCO segmentation (polygons or RLE) before pycocotools sees it.

pycocotools' C code trusts its input: a coordinate of 1e9 segfaults it, 4e8 exhausts memory, a damaged
RLE string is read past its end. `segmentation_problems` finds each such fault, so the validator and
the rasteriser can refuse it with a sentence instead.
"""
from __future__ import annotations

import math

from trashlib.data.values import is_count, is_number, show

OUTSIDE_LIMIT = 2  # image sizes a polygon may stray outside its image (a warning) before it is an error
MAX_OUTLINE = 200  # an annotation's outline may be this many times the image's width + height


def rle_counts(counts: str | list) -> list[int]:
    """The run lengths of an RLE `counts` (a list, or COCO's compressed string); ValueError if malformed.

    The string is decoded as pycocotools' rleFrString does, but with every character checked, so a
    damaged string is an error here instead of garbage (or a read past its end) in the C code.
    """
    if isinstance(counts, list):
        for v in counts:
            if not is_count(v) or not 0 <= v < 2**32:
                raise ValueError(f"run length {show(v)} is not an integer in 0..2**32-1")
        return counts
    out: list[int] = []
    p = 0
    while p < len(counts):
        x = k = 0
        more = True
        while more:
            if p >= len(counts) or k > 6:
                raise ValueError(f"counts string is cut off or garbled at character {p}")
            c = ord(counts[p]) - 48
            if not 0 <= c < 64:
                raise ValueError(f"counts string has {show(counts[p])} at character {p} (COCO RLE uses '0'..'o')")
            x |= (c & 0x1F) << 5 * k
            more = bool(c & 0x20)
            p, k = p + 1, k + 1
            if not more and c & 0x10:
                x |= -1 << 5 * k
        if len(out) > 2:
            x += out[-2]
        if not 0 <= x < 2**32:
            raise ValueError(f"counts string decodes to run length {x} (character {p})")
        out.append(x)
    return out


def _rle_problems(seg: dict, *, width: int, height: int) -> list[tuple[str, bool]]:
    if "counts" not in seg or "size" not in seg:
        return [("RLE segmentation lacks 'counts' or 'size'", True)]
    size = seg["size"]
    if not (isinstance(size, list) and len(size) == 2 and all(map(is_count, size))):
        return [(f"RLE size must be [height, width] integers, not {show(size)}", True)]
    if size != [height, width]:
        return [(f"RLE size {size} differs from the image's [{height}, {width}]", True)]
    if not isinstance(seg["counts"], (str, list)):
        return [("RLE counts must be a string or a list of run lengths", True)]
    try:
        total = sum(rle_counts(seg["counts"]))
    except ValueError as e:
        return [(f"RLE {e}", True)]
    if total != height * width:
        # pycocotools would paint uninitialised memory (too few) or fail (too many)
        return [(f"RLE run lengths add up to {total}, not height*width = {height * width}", True)]
    return []


def _coordinates(poly: list) -> list[float] | None:
    try:
        return [float(v) for v in poly]
    except OverflowError:  # an integer beyond the float range
        return None


def segmentation_problems(seg, *, width: int, height: int) -> list[tuple[str, bool]]:
    """(message, fatal) for each fault of one COCO segmentation (polygon list or RLE dict).

    Bounds (why: pycocotools' work grows with the coordinates; 4e8 exhausts memory, 1e9 segfaults):
    a coordinate within a pixel of the image is fine (points on the far edge are common); one further
    out is a warning and is clipped while rasterising, as pycocotools always did; one more than
    OUTSIDE_LIMIT image sizes outside (or NaN, infinite) is an error, as is an outline (the polygons'
    summed edge lengths) longer than MAX_OUTLINE times the image's width + height.
    """
    if isinstance(seg, dict):  # RLE, used for iscrowd annotations
        return _rle_problems(seg, width=width, height=height)
    if not isinstance(seg, list) or not seg:
        return [("segmentation must be a non-empty list of polygons or an RLE dict", True)]
    out = []
    outline = 0.0
    for k, poly in enumerate(seg):
        if not isinstance(poly, list) or not all(map(is_number, poly)):
            out.append((f"polygon {k} is not a flat list of numbers", True))
            continue
        coords = _coordinates(poly)
        if coords is None or not all(map(math.isfinite, coords)):
            out.append((f"polygon {k} has a NaN, infinite or huge coordinate", True))
        elif len(poly) % 2:
            out.append((f"polygon {k} has an odd number of coordinates ({len(poly)})", True))
        elif len(poly) < 6:
            # pycocotools would even read a 4-number polygon as a box
            out.append((f"polygon {k} has {len(poly) // 2} point(s) (needs at least 3)", True))
        else:
            xs, ys = coords[0::2], coords[1::2]
            x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
            where = f"(x {x0:g}..{x1:g}, y {y0:g}..{y1:g})"
            lim = OUTSIDE_LIMIT
            if x0 < -lim * width or y0 < -lim * height or x1 > (1 + lim) * width or y1 > (1 + lim) * height:
                out.append((f"polygon {k} has coordinates far outside the {width}x{height} image {where}; "
                            f"at most {lim:g} image sizes outside are accepted", True))
                continue
            if x0 < -1 or y0 < -1 or x1 > width + 1 or y1 > height + 1:
                out.append((f"polygon {k} lies outside the {width}x{height} image {where}",
                            x1 < 0 or y1 < 0 or x0 > width or y0 > height))
            outline += sum(max(abs(xs[i] - xs[i - 1]), abs(ys[i] - ys[i - 1])) for i in range(len(xs)))
    if outline > MAX_OUTLINE * (width + height):
        out.append((f"outline is {outline:.0f} px long, more than {MAX_OUTLINE} times the image's width + height "
                    f"(too costly to rasterise)", True))
    return out
