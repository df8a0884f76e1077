"""Inference: per-image class probabilities with test-time augmentation, streamed to the probability store.

`predict(run, data_root, "test", tta=TTA(hflip=True, scales=(0.75, 1, 1.25)))` writes one map per image
through `probs.ProbWriter` (under data/interim/probs/<run>/...) and returns the `ProbIndex` that
evaluation, ensembling, CRF and submission code iterate over; the split is never held in memory.
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from trashlib.data import TrashDataset
from trashlib.io import check_writable
from trashlib.predict.batching import images_to_tensor, item_loader, same_size_groups
from trashlib.predict.probmap import quantize_probs
from trashlib.predict.probs import ProbIndex, ProbWriter, store_dir, stored_index
from trashlib.progress import shown
from trashlib.runs import Run


@dataclass(frozen=True)
class TTA:
    """Test-time augmentation: horizontal flip, input scales, sliding window (size, stride); `tag` names it.

    `size` is the working resolution (a run's `work_size`): the image's longer side is resized to it
    first, the scales are relative to it, and probabilities come back at the image's own size.
    """

    hflip: bool = False
    scales: tuple[float, ...] = (1.0,)
    window: tuple[int, int] | None = None
    size: int | None = None

    def __post_init__(self):
        object.__setattr__(self, "scales", tuple(float(s) for s in self.scales))
        if self.size is not None and (isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1):
            raise ValueError(f"TTA size must be a positive number of pixels or None, got {self.size!r}")
        if not self.scales or min(self.scales) <= 0:
            raise ValueError(f"TTA scales must be positive numbers, got {self.scales}")
        if self.window is not None:
            window = tuple(int(v) for v in self.window)
            if len(window) != 2 or min(window) < 1 or window[1] > window[0]:
                raise ValueError(f"TTA window must be (size, stride) with 0 < stride <= size, got {self.window}")
            object.__setattr__(self, "window", window)

    @property
    def tag(self) -> str:
        """Folder tag, e.g. "hflip_s0.75-1-1.25_w512-384" ("plain" for none)."""
        parts = [f"r{self.size}"] if self.size else []
        parts += ["hflip"] if self.hflip else []
        if self.scales != (1.0,):
            parts.append("s" + "-".join(f"{s:g}" for s in self.scales))
        if self.window:
            parts.append(f"w{self.window[0]}-{self.window[1]}")
        return "_".join(parts) or "plain"

    def as_dict(self) -> dict:
        return {"hflip": self.hflip, "scales": list(self.scales), "window": list(self.window) if self.window else None,
                "size": self.size}

    def at(self, size: int | None) -> "TTA":
        """This TTA at working resolution `size` (unchanged when it already has one or `size` is None)."""
        return self if self.size is not None or size is None else dataclasses.replace(self, size=int(size))


# -- tensor functions ------------------------------------------------------------------------------
def _starts(length: int, size: int, stride: int) -> list[int]:
    starts = list(range(0, length - size + 1, stride))
    return starts if starts[-1] == length - size else starts + [length - size]


#: the test-time augmentation every prediction uses unless told otherwise: the image and its mirror
DEFAULT_TTA = TTA(hflip=True)


@torch.no_grad()
def sliding_window(model, images: torch.Tensor, *, size: int, stride: int) -> torch.Tensor:
    """Probabilities averaged over size x size windows every `stride` pixels (images padded up to size).

    Shape:
        images: (N, 3, H, W) float in [0, 1]
        returns: (N, C, H, W)
    """
    n, _, h, w = images.shape
    ph, pw = max(h, size), max(w, size)
    if (ph, pw) != (h, w):
        images = F.pad(images, (0, pw - w, 0, ph - h))
    total, count = None, torch.zeros(1, 1, ph, pw, device=images.device)
    for y in _starts(ph, size, stride):
        for x in _starts(pw, size, stride):
            p = model.predict_proba(images[..., y:y + size, x:x + size])
            if total is None:
                total = images.new_zeros(n, p.shape[1], ph, pw)
            total[..., y:y + size, x:x + size] += p
            count[..., y:y + size, x:x + size] += 1
    return (total / count)[..., :h, :w]


@torch.no_grad()
def predict_tta(model, images: torch.Tensor, tta: TTA = TTA()) -> torch.Tensor:
    """Probabilities averaged over `tta`'s scales (resize in, predict, resize back bilinearly) and flips.

    Scales are relative to `tta.size` (the working resolution) when it is set, else to the image.

    Shape:
        images: (N, 3, H, W) float in [0, 1]
        returns: (N, C, H, W), summing to 1 over C
    """
    n, _, h, w = images.shape
    hflip, window = tta.hflip, tta.window
    total, views = None, 0
    base = tta.size / max(h, w) if tta.size else 1.0
    for scale in tta.scales:
        s = scale * base
        # antialias when shrinking: the training pipeline shrinks to the working resolution by area averaging
        x = images if s == 1 else F.interpolate(images, size=(round(h * s), round(w * s)), mode="bilinear",
                                                 align_corners=False, antialias=s < 1)
        batch = torch.cat([x, x.flip(-1)]) if hflip else x  # one forward for both views
        if window is None:
            p = model.predict_proba(batch)
        else:
            p = sliding_window(model, batch, size=window[0], stride=window[1])
        p = p.float()
        if hflip:
            p = p[:n] + p[n:].flip(-1)
        if s != 1:
            p = F.interpolate(p, size=(h, w), mode="bilinear", align_corners=False)
        total = p if total is None else total + p
        views += 2 if hflip else 1
    total /= views
    return total / total.sum(1, keepdim=True).clamp_min(1e-12)  # against float drift of the averages


# -- predict ---------------------------------------------------------------------------------------
def _weights_fingerprint(model) -> str:
    h = hashlib.sha1()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().to("cpu").contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _config(run: Run):
    """A run's TrainConfig; a config.yaml that is not text is a ValueError naming it."""
    try:
        return run.config
    except UnicodeDecodeError as e:
        raise ValueError(f"{run.path / 'config.yaml'}: not UTF-8 text (byte {e.start}); is it a run folder?") from None


def _model_source(run_or_model, which: str, device):
    """(description, store source name, load) of a Run, a run folder or a bare model; load() returns the model.

    A run is described from its checkpoint file alone, so the store can be looked at (and found
    unwritable) before the model is built. A run's model goes to `device` (default: CUDA when
    available); a bare model stays where it is unless `device` is given.
    """
    if isinstance(run_or_model, (str, os.PathLike)):
        run_or_model = Run(run_or_model)
    if isinstance(run_or_model, Run):
        run = run_or_model
        ckpt = run.checkpoint(which)
        st = ckpt.stat()
        desc = {"run": run.name, "checkpoint": ckpt.relative_to(run.path).as_posix(), "size": st.st_size,
                "mtime_ns": st.st_mtime_ns}

        def load():
            _config(run)  # read first, so that a config.yaml that is not text is named
            try:
                return run.load_model(which, device=device or ("cuda" if torch.cuda.is_available() else "cpu"))
            except RuntimeError as e:  # load_state_dict: weights of another architecture
                if "state_dict" not in str(e):
                    raise
                raise ValueError(f"{ckpt}: the weights do not fit the model in {run.path / 'config.yaml'} "
                                 f"({str(e).splitlines()[0].rstrip(':. ')})") from None

        return desc, run.name, load
    model = run_or_model if device is None else run_or_model.to(device)  # None: where the model is
    desc = {"name": getattr(model, "name", type(model).__name__), "weights": _weights_fingerprint(model)}
    return desc, f"{desc['name'] or 'model'}-{desc['weights'][:8]}", lambda: model


def predict(run_or_model, data_root=None, split: str = "test", *, tta: TTA = DEFAULT_TTA, out_dir=None,
            batch_size: int = 1, quantize: bool = True, which: str = "last", device=None, workers: int = 2,
            force: bool = False, progress: bool | None = None, max_images: int | None = None) -> ProbIndex:
    """Write every image's TTA probabilities of a split to the store (reusing a complete identical result).

    The run, the split and the writability of the output folder are checked before the model is loaded.

    `run_or_model`: a Run, a run folder, or a SegmentationModel; a run predicts at its working
    resolution (`tta.at(config.work_size)`) unless `tta.size` says otherwise. Output: probs.store_dir(run name,
    data root, split, TTA tag), or a folder of that name under `out_dir`. `max_images` predicts only
    the first images of the split (quick looks; never for a submission): a part of the split on purpose,
    in its own folder (tag "-first<N>"), that scoring takes only when asked for a subset.
    A stored result is reused only when every map checks out; a damaged map is predicted again.
    """
    # Cheap checks first: the run, the split and the output folder, then the model.
    desc, source, load = _model_source(run_or_model, which, device)
    if isinstance(run_or_model, (str, os.PathLike, Run)):  # a run predicts at its working resolution
        run = run_or_model if isinstance(run_or_model, Run) else Run(run_or_model)
        tta = tta.at(_config(run).work_size)
    dataset = TrashDataset(data_root, split=split)
    tag = tta.tag + (f"-first{max_images}" if max_images else "")
    folder = store_dir(source, dataset.root, split, tag)
    if out_dir is not None:
        folder = Path(out_dir) / folder.name
    settings = {"split": split, "data_root": str(dataset.root), "split_sha1": dataset.sha1, "model": desc,
                "tta": tta.as_dict(), "quantize": quantize, "max_images": max_images}
    done = None if force else stored_index(folder, settings)
    if done is not None:
        return done
    check_writable(folder, what=f"the probability maps to {folder}")
    model = load()
    tensor = next(itertools.chain(model.parameters(), model.buffers()), None)
    device = tensor.device if tensor is not None else torch.device("cpu")
    items = [{"image_id": info["id"], "file_name": info["file_name"],
              "shape": [model.num_classes, info["height"], info["width"]]}
             for info in dataset.image_infos[:max_images]]
    writer = ProbWriter(folder, items, settings, quantize=quantize, force=force)
    model.eval()
    loader = item_loader(dataset, writer.todo, batch_size=batch_size, workers=workers, masks=False)
    with tqdm(total=len(items), initial=len(items) - len(writer.todo), disable=not shown(progress),
              desc=f"predict {split}") as bar:
        for batch in loader:  # the writer compresses in the background while the next batch runs
            for group in same_size_groups(batch):
                probs = predict_tta(model, images_to_tensor([g[1] for g in group], device), tta)
                stored = (quantize_probs(probs) if quantize else probs.half()).cpu().numpy()
                for (i, _, _), p in zip(group, stored):
                    writer.write(i, p)
                bar.update(len(group))
    return writer.close()
