"""The build: photos fetched or read, converted in a thread pool, split, and written as a data root.

Photos come from a local checkout or are downloaded from their URLs by a thread pool (downloads are kept
under `<out>/originals/`, so a second run resumes: what is there and has the annotated size is kept).
A photo that cannot be had is left out with its reason in `failed.csv` and the summary; the split files
are written only at the end, from the photos converted. `--out` must be new, empty, or a folder this
module made (it carries MARKER_FILE); nothing else is ever touched.
"""
from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from trashlib.data.download import FetchError, fetch
from trashlib.data.stratify import stratified_split
from trashlib.data.taco.layout import write_failed, write_layout
from trashlib.data.taco.photo import PhotoError, PhotoGrid, inspect_photo, upright_annotations, write_upright
from trashlib.data.taco.source import (DEFAULT_SOURCE, AnnotationFile, TacoPhoto, is_url, local_data_dir,
                                       read_annotation_file)
from trashlib.io import read_json, write_json
from trashlib.progress import shown

MARKER_FILE = ".trashlib-taco"
ORIGINALS = "originals"
ANNOTATIONS_CACHE = "taco-annotations"
# body types a photo may be served as: S3 buckets often serve JPEGs as octet-stream (the decode check follows)
PHOTO_TYPES = ("image/", "application/octet-stream", "binary/octet-stream")
_TEMPORARY = re.compile(r"^\..+\.tmp$")  # trashlib.io.atomic_open's names


@dataclass(frozen=True)
class Outcome:
    """What became of one photo: its output file and annotations, or the reason it was left out."""

    photo: TacoPhoto
    file_name: str
    grid: PhotoGrid | None = None
    annotations: tuple[dict, ...] = ()
    lost: int = 0
    reason: str | None = None


@dataclass(frozen=True)
class TacoBuild:
    out: Path
    used: tuple[Outcome, ...]
    failed: tuple[Outcome, ...]
    split: dict[str, str]
    counts: dict  # split -> class id -> (images, annotations)

    def summary(self) -> str:
        """Lines for a person: what was built, and every reason a photo was left out, counted."""
        by_split = {s: sum(v == s for v in self.split.values()) for s in ("train", "val", "test")}
        lines = [f"{self.out}: {len(self.used)} photos ({', '.join(f'{n} {s}' for s, n in by_split.items())})"]
        if self.failed:
            reasons: dict[str, list[str]] = {}
            for o in self.failed:
                reasons.setdefault(re.sub(r"\d+", "N", o.reason), []).append(o.photo.file_name)
            lines.append(f"{len(self.failed)} photos left out (each with its URL and reason in "
                         f"{self.out / 'failed.csv'}):")
            for reason, names in sorted(reasons.items(), key=lambda kv: -len(kv[1])):
                example = next(o.reason for o in self.failed if o.photo.file_name == names[0])
                lines.append(f"  {len(names)} x {example}: {', '.join(names[:3])}{', ...' if len(names) > 3 else ''}")
        return "\n".join(lines)


def _prepare_out(out, *, size: int, local: Path | None) -> Path:
    """Create `out` and its marker, or accept a folder this module made at the same size; refuse the rest."""
    out = Path(out).expanduser().resolve()
    if local is not None and (out == local or local in out.parents or out in local.parents):
        raise ValueError(f"--out {out} overlaps the TACO checkout {local}: choose a folder outside it")
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} is a file, not a folder")
    marker = out / MARKER_FILE
    if marker.is_file():
        try:
            made = read_json(marker)
            made_size = made["size"]
        except (ValueError, KeyError, TypeError):
            raise ValueError(f"--out {out}: its marker {MARKER_FILE} is unreadable; choose another folder") from None
        if made_size != size:
            raise ValueError(f"--out {out} holds a TACO build at --size {made_size}, not {size}: choose another "
                             f"folder (its downloads in {ORIGINALS}/ can be copied there to save the network)")
        return out
    if out.is_dir() and any(out.iterdir()):
        shown = ", ".join(sorted(p.name for p in out.iterdir())[:3])
        raise ValueError(f"--out {out} already holds files trashlib did not write ({shown}...); nothing there is "
                         f"touched: choose a new or empty folder")
    out.mkdir(parents=True, exist_ok=True)
    write_json(marker, {"made_by": "trashlib.data.taco", "size": size,
                        "note": "trashlib may resume this TACO build; it never writes into a folder without this file"})
    return out


def _remove_temporaries(out: Path) -> None:
    """Delete the temporary files an interrupted run of this module left (atomic_open's names, in its folder)."""
    for folder, _, files in os.walk(out):
        for name in files:
            if _TEMPORARY.match(name):
                Path(folder, name).unlink(missing_ok=True)


def _check_photo(path: Path, photo: TacoPhoto) -> None:
    try:
        inspect_photo(path, photo, decode=True)
    except PhotoError as e:
        raise FetchError(str(e), permanent=True) from None


def _original(photo: TacoPhoto, *, out: Path, local: Path | None, download: bool, options: dict) -> Path:
    """The photo file: in the checkout, already downloaded (and of the annotated size), or downloaded now."""
    if local is not None and (local / photo.file_name).is_file():
        return local / photo.file_name
    kept = out / ORIGINALS / photo.file_name
    if kept.is_file():
        try:
            inspect_photo(kept, photo)
            return kept
        except PhotoError:
            pass  # not what the annotation describes (its source changed?): fetched again below
    if not download:
        raise PhotoError("not in the local checkout (pass --download to fetch it from its URL)")
    if not photo.url:
        raise PhotoError("no URL in TACO's annotations")
    return fetch(photo.url, kept, content_type=PHOTO_TYPES, check=lambda p: _check_photo(p, photo), **options)


def _convert(photo: TacoPhoto, *, out: Path, local, download: bool, size: int, options: dict) -> Outcome:
    name = Path(photo.file_name).with_suffix(".jpg").as_posix()
    try:
        path = _original(photo, out=out, local=local, download=download, options=options)
        grid = inspect_photo(path, photo)
        if not (out / name).is_file():  # written atomically: if there, it is whole
            write_upright(path, out / name, grid, size=size)
        annotations, lost = upright_annotations(photo, grid, size=size)
        return Outcome(photo, name, grid, tuple(annotations), lost)
    except FetchError as e:
        return Outcome(photo, name, reason=f"download failed: {e.reason}")
    except PhotoError as e:
        return Outcome(photo, name, reason=str(e))
    except OSError as e:
        return Outcome(photo, name, reason=f"{e.strerror or e}: {e.filename or ''}".rstrip(": "))
    except Exception as e:  # one photo never stops the build; the reason is listed
        return Outcome(photo, name, reason=f"{type(e).__name__}: {e}")


def build_taco(out, *, source: str = DEFAULT_SOURCE, unofficial: bool = False, workers: int = 8, size: int = 512,
               download: bool | None = None, timeout: float = 30.0, retries: int = 3, backoff: float = 1.0,
               seed: int = 0, progress: bool | None = None) -> TacoBuild:
    """Build TACO into `out` in the competition layout (see the module docstring); returns what was built.

    `download`: fetch photos missing from a local checkout (default: only when `source` is a URL).
    """
    if not isinstance(size, int) or isinstance(size, bool) or not 64 <= size <= 4096:
        raise ValueError(f"--size must be an integer in 64..4096, got {size!r}")
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"--workers must be a positive integer, got {workers!r}")
    if not (timeout > 0 and retries >= 0 and backoff >= 0):  # also refuses NaN
        raise ValueError(f"timeout must be positive, retries and backoff non-negative (got {timeout}, {retries}, {backoff})")
    source = str(source)
    local = None if is_url(source) else local_data_dir(source)
    fetch_options = dict(timeout=timeout, retries=retries)

    def read(cache: Path | None) -> list[AnnotationFile]:
        return [read_annotation_file(source, s, cache=cache, **fetch_options) for s in ("official", "unofficial")[:1 + unofficial]]

    files = None if local is None else read(None)  # a broken checkout is refused before --out is made
    out = _prepare_out(out, size=size, local=local)
    _remove_temporaries(out)
    files = files or read(out / ANNOTATIONS_CACHE)  # downloaded once into the build, so a resumed run reads the same
    photos = _unique([p for f in files for p in f.photos], files)
    download = local is None if download is None else download
    options = dict(fetch_options, backoff=backoff)
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        futures = [pool.submit(_convert, p, out=out, local=local, download=download, size=size, options=options)
                   for p in photos]
        bar = tqdm(as_completed(futures), total=len(futures), desc="TACO photos", unit="photo",
                   disable=not shown(progress))
        outcomes = [f.result() for f in bar]
    finally:  # on Ctrl-C the photos not started are dropped; the running ones end within their timeout
        pool.shutdown(wait=True, cancel_futures=True)
    order = {(p.taco_set, p.taco_id): k for k, p in enumerate(photos)}
    outcomes.sort(key=lambda o: order[o.photo.taco_set, o.photo.taco_id])
    used = tuple(o for o in outcomes if o.reason is None)
    failed = tuple(o for o in outcomes if o.reason is not None)
    write_failed(out / "failed.csv", failed)
    split = stratified_split({o.file_name: {a["category_id"] for a in o.annotations} for o in used}, seed=seed)
    counts = write_layout(out, used, split, files=files, failed=failed, size=size, source=source,
                          downloaded=(out / ORIGINALS).is_dir())
    return TacoBuild(out, used, failed, split, counts)


def _unique(photos: list[TacoPhoto], files: list[AnnotationFile]) -> list[TacoPhoto]:
    """The photos, refused when two would be written to the same output file."""
    seen: dict[str, TacoPhoto] = {}
    for p in photos:
        key = Path(p.file_name).with_suffix(".jpg").as_posix().lower()
        if key in seen:
            first = seen[key]
            raise ValueError(f"{', '.join(f.name for f in files)}: image {p.taco_id} ({p.taco_set}) and image "
                             f"{first.taco_id} ({first.taco_set}) would both be written as {key}")
        seen[key] = p
    return photos
