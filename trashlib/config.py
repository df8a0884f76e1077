"""`TrainConfig`: every setting of one training run, validated, saved as config.yaml in the run folder.

The one home of the training recipe. A config is a dataclass with defaults (no registries, no
inheritance chains); each field carries its help text, so `python -m trashlib train --help` is
generated from the dataclass alone (`add_config_arguments`) and a new setting is one edit here.
Fields that change the result are the run's identity (`identity()`, `config_hash()`); bookkeeping
fields (run name, output folder, resume, workers, intervals) are not, so changing them reuses or
resumes the same run.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from trashlib.classes import CLASS_NAMES
from trashlib.io import atomic_open

MIXED_PRECISION = ("no", "fp16", "bf16", "auto")
CLASS_WEIGHTING = (None, "cdb")
COPY_PASTE = ("none", "online", "offline")
CP_DONORS = ("uniform", "inverse", "classes", "classmix")
SCHEDULES = ("poly", "wsd")  # trashlib.training.schedule


def option(default, help: str, *, identity: bool = True, **cli):
    """A TrainConfig field: its default, its help text (the only place it is written), whether it
    changes the trained weights (`identity`), and extra argparse settings (`flag`, `choices`, ...)."""
    return field(default=default, metadata={"help": help, "identity": identity, "cli": cli})


@dataclass
class TrainConfig:
    """Settings of one training run; `train(cfg)` runs it, `python -m trashlib train --help` lists them."""

    model: str = option("segformer", "model name, one of trashlib.models.MODELS")
    size: str = option("tiny", "model size preset: tiny (random init, CPU-sized), base or large")
    pretrained: str | None = option(None, "hub id or local folder of pretrained weights (None: random init)")
    data_root: str | None = option(None, "data root in the competition layout (None: TRASHLIB_DATA or the "
                                         "embedded dataset)", flag="--data")
    train_split: str = option("train", "training split (a JSON file of the data root)")
    extra_train: tuple[str, ...] = option((), "label-map datasets (folders with index.json: offline copy-paste, "
                                              "pseudo labels) trained on together with train_split", nargs="*")
    extra_repeat: float = option(1.0, "how many times an epoch draws each image of extra_train's sets, as a multiple "
                                       "of a train-split image's draws (>= 1; repeat factors multiply it): the dose "
                                       "of pseudo labels an arm of a few steps sees")
    val_split: str | None = option("val", "validation split (None: no evaluation)")
    steps: int = option(1000, "optimizer steps")
    batch_size: int = option(8, "images per device per micro-batch")
    grad_accum: int = option(1, "micro-batches accumulated per optimizer step")
    image_size: int = option(512, "square training crop, in pixels (at the working resolution)")
    work_size: int | None = option(None, "working resolution: every image is resized so that its longer side is "
                                         "this many pixels before augmentation, validation and prediction, and "
                                         "predictions are upsampled to the label maps' size for scoring "
                                         "(None: the images' own size)")
    init_from: str | None = option(None, "a finished run (folder, or name in the runs folder) whose last weights "
                                         "and AdamW moments start this run: a branch of a trunk run, with its own "
                                         "lr schedule (None: random init or `pretrained`)")
    lr: float = option(1e-4, "head learning rate (AdamW)")
    weight_decay: float = option(0.05, "AdamW weight decay (not on norms, biases and embeddings)")
    backbone_lr_mult: float = option(0.1, "backbone learning rate = lr x this (1 for random init)")
    warmup_steps: int | None = option(None, "linear warmup steps (None: 5% of steps)")
    poly_power: float = option(0.9, "poly decay after warmup: lr x (1 - t)^power")
    schedule: str = option("poly", "learning-rate schedule after warmup: poly (decays from the first step) or wsd "
                                   "(warmup-stable-decay: the peak held, then a 1 - sqrt cooldown to 0 over the last "
                                   "decay_fraction of the steps)", choices=SCHEDULES)
    decay_fraction: float = option(0.15, "wsd: share of the steps in the final cooldown")
    # AdamW is invariant to a constant gradient scale, so a full-model clip only re-weights steps
    # against each other: Mask2Former's 0.01 clips EVERY step (training on normalised gradients);
    # 1.0 clips only the spikes of random-init heads and leaves SegFormer/UperNet's usual steps alone.
    grad_clip: float | None = option(1.0, "max global gradient norm (None: no clipping; 0.01 is the Mask2Former "
                                          "recipe, which clips every step)")
    scale_range: tuple[float, float] = option((0.5, 2.0), "random rescale range of the image before cropping",
                                              nargs=2, metavar=("LOW", "HIGH"))
    hflip: float = option(0.5, "horizontal flip probability")
    repeat_threshold: float | None = option(None, "repeat factor sampling (LVIS): an epoch draws each training image "
                                                  "about max(1, sqrt(t / f)) times, f = the fraction of training "
                                                  "images that hold its rarest object class (e.g. 0.1-0.3; None: "
                                                  "every image once per epoch)")
    color_jitter: float = option(0.2, "brightness/contrast/saturation jitter strength (0: off)")
    # copy & paste (trashlib.data.copy_paste, trashlib.data.pasted): one recipe, applied online or offline
    copy_paste: str = option("none", "copy & paste augmentation: none; online (a new paste each time an image is "
                                     "drawn); offline (cp_copies pasted copies of every training image written once "
                                     "under data/interim/label-maps/ and trained on beside the originals)",
                             choices=COPY_PASTE)
    cp_donors: str = option("uniform", "what is pasted: objects drawn uniform (every object equally likely), inverse "
                                       "(a class with probability 1 / its object count), classes (objects of "
                                       "cp_classes only), or classmix (every pixel of a random half of the classes "
                                       "of another training image)", choices=CP_DONORS)
    cp_classes: tuple[str, ...] = option((), "class names pasted with cp_donors=classes", nargs="*")
    cp_prob: float = option(0.5, "online: probability that a drawn image gets a paste (offline copies are all pasted: "
                                 "N copies beside the originals paste N/(N+1) of the images drawn)")
    cp_max_objects: int = option(3, "objects pasted per image: 1 to this many, each on top of the last")
    cp_scale: tuple[float, float] = option((0.5, 1.5), "random scale of a pasted object, relative to its size in its "
                                                       "own photo", nargs=2, metavar=("LOW", "HIGH"))
    cp_blend_sigma: float = option(1.0, "edge blending: sigma of the Gaussian that feathers a pasted object's edge, "
                                        "in pixels of the photo at its own size (0: hard edges); labels follow the "
                                        "hard edge")
    cp_copies: int = option(1, "offline: pasted copies per training image")
    eval_every: int | None = option(500, "evaluate every N steps, and always at the end (None: only at the end)")
    eval_max_images: int | None = option(None, "evaluate on the first N validation images (None: all)")
    save_every: int | None = option(None, "last-checkpoint interval in steps (None: at every evaluation)",
                                    identity=False)
    seed: int = option(0, "random seed: initialisation, data order, augmentation")
    mixed_precision: str = option("no", "mixed precision; auto: bf16 where the hardware computes it natively (a CUDA "
                                         "GPU with bf16, a CPU with AVX512-BF16 or AMX), else none", choices=MIXED_PRECISION)
    num_workers: int | None = option(None, "DataLoader workers; the data order does not depend on them "
                                           "(None: min(8, cores - 1))", identity=False)
    class_weighting: str | None = option(None, "'cdb': class weights (1 - IoU_c)^cdb_tau from each evaluation "
                                               "(None: off)")
    cdb_tau: float = option(1.0, "exponent of the CDB class weights")
    log_every: int = option(10, "steps per logged loss line", identity=False)
    run_name: str | None = option(None, "run folder name (None: generated from the config)", identity=False)
    out_dir: str | None = option(None, "folder of run folders (None: runs/ or TRASHLIB_RUNS)", identity=False,
                                 flag="--out")
    resume: bool = option(False, "continue an unfinished run from its last checkpoint", identity=False)
    restart: bool = option(False, "start an interrupted run over from step 0, deleting its checkpoints and metrics "
                                  "(without --resume or --restart, an interrupted run refuses to start)",
                           identity=False)

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):  # from YAML or JSON
                setattr(self, f.name, tuple(value))
            elif isinstance(value, os.PathLike):
                setattr(self, f.name, str(value))
        if isinstance(self.extra_train, str):
            self.extra_train = (self.extra_train,)
        self.extra_train = tuple(str(p) for p in self.extra_train)
        if isinstance(self.cp_classes, str):
            self.cp_classes = (self.cp_classes,)
        # one spelling per set of classes: the table's names, in class-id order, so identity and name agree
        canonical = {n.lower(): n for n in CLASS_NAMES}
        if all(isinstance(n, str) and n.lower() in canonical for n in self.cp_classes):
            self.cp_classes = tuple(sorted({canonical[n.lower()] for n in self.cp_classes}, key=CLASS_NAMES.index))
        problems = list(self._problems())
        if problems:
            raise ValueError("invalid TrainConfig: " + "; ".join(problems))

    def _problems(self):
        def positive_int(name, allow_none=False):
            v = getattr(self, name)
            if v is None and allow_none:
                return
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                yield f"{name} must be a positive integer{' or None' if allow_none else ''}, got {v!r}"

        for name in ("steps", "batch_size", "grad_accum", "image_size", "log_every", "cp_max_objects", "cp_copies"):
            yield from positive_int(name)
        for name in ("eval_every", "eval_max_images", "save_every", "work_size"):
            yield from positive_int(name, allow_none=True)
        hints = typing.get_type_hints(type(self))
        not_numbers = []
        for f in fields(self):  # every number must be a finite number: `nan <= 0` is False
            value = getattr(self, f.name)
            numbers = value if isinstance(value, tuple) else (value,)
            optional = type(None) in typing.get_args(hints[f.name])
            if "float" in str(hints[f.name]) and any(
                    not (v is None and optional)
                    and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v))
                    for v in numbers):
                not_numbers.append(f"{f.name} must be a finite number, got {value!r}")
        if not_numbers:  # the range checks below would compare text or NaN
            yield from not_numbers
            return
        if not self.model or not isinstance(self.model, str):
            yield f"model must be a model name, got {self.model!r}"
        if self.lr <= 0:
            yield f"lr must be > 0, got {self.lr}"
        if self.weight_decay < 0 or self.backbone_lr_mult < 0:
            yield "weight_decay and backbone_lr_mult must be >= 0"
        if self.warmup_steps is not None and not (0 <= self.warmup_steps < self.steps):
            yield f"warmup_steps must be in [0, steps={self.steps}), got {self.warmup_steps}"
        if self.poly_power < 0:
            yield f"poly_power must be >= 0, got {self.poly_power}"
        if self.schedule not in SCHEDULES:
            yield f"schedule must be one of {SCHEDULES}, got {self.schedule!r}"
        if not 0 < self.decay_fraction <= 1:
            yield f"decay_fraction must be in (0, 1], got {self.decay_fraction}"
        if self.grad_clip is not None and self.grad_clip <= 0:
            yield f"grad_clip must be > 0 or None, got {self.grad_clip}"
        lo_hi = self.scale_range
        if len(lo_hi) != 2 or not (0 < lo_hi[0] <= lo_hi[1]):
            yield f"scale_range must be (low, high) with 0 < low <= high, got {lo_hi!r}"
        if not 0 <= self.hflip <= 1:
            yield f"hflip must be a probability in [0, 1], got {self.hflip}"
        if not self.extra_repeat >= 1:  # NaN fails too
            yield f"extra_repeat must be a number >= 1, got {self.extra_repeat}"
        if self.repeat_threshold is not None and not 0 < self.repeat_threshold <= 1:
            yield f"repeat_threshold must be in (0, 1] or None, got {self.repeat_threshold}"
        if not 0 <= self.color_jitter <= 1:
            yield f"color_jitter must be in [0, 1], got {self.color_jitter}"
        yield from self._copy_paste_problems()
        if self.mixed_precision not in MIXED_PRECISION:
            yield f"mixed_precision must be one of {MIXED_PRECISION}, got {self.mixed_precision!r}"
        if self.class_weighting not in CLASS_WEIGHTING:
            yield f"class_weighting must be one of {CLASS_WEIGHTING}, got {self.class_weighting!r}"
        if self.class_weighting and not self.val_split:
            yield "class_weighting='cdb' needs a val_split (weights come from validation IoU)"
        if self.cdb_tau < 0:
            yield f"cdb_tau must be >= 0, got {self.cdb_tau}"
        if self.init_from is not None and (not isinstance(self.init_from, str) or not self.init_from.strip()):
            yield f"init_from must be a run folder or run name, got {self.init_from!r}"
        if self.resume and self.restart:
            yield "resume and restart exclude each other: --resume continues a run, --restart starts it over"
        if self.num_workers is not None and self.num_workers < 0:
            yield f"num_workers must be >= 0 or None, got {self.num_workers}"

    def _copy_paste_problems(self):
        if self.copy_paste not in COPY_PASTE:
            yield f"copy_paste must be one of {COPY_PASTE}, got {self.copy_paste!r}"
        if self.cp_donors not in CP_DONORS:
            yield f"cp_donors must be one of {CP_DONORS}, got {self.cp_donors!r}"
        unknown = [n for n in self.cp_classes if not isinstance(n, str) or n.lower() not in
                   {c.lower() for c in CLASS_NAMES[1:]}]
        if unknown:
            yield (f"cp_classes must be class names other than Background ({', '.join(CLASS_NAMES[1:])}), "
                   f"got {unknown!r}")
        if self.cp_donors == "classes" and not self.cp_classes:
            yield "cp_donors='classes' needs the classes to paste in cp_classes"
        if self.cp_classes and self.cp_donors != "classes":
            yield (f"cp_classes is used only with cp_donors='classes', not {self.cp_donors!r}: drop it or change "
                   "cp_donors")
        if not 0 <= self.cp_prob <= 1:
            yield f"cp_prob must be a probability in [0, 1], got {self.cp_prob}"
        if len(self.cp_scale) != 2 or not (0 < self.cp_scale[0] <= self.cp_scale[1]):
            yield f"cp_scale must be (low, high) with 0 < low <= high, got {self.cp_scale!r}"
        if self.cp_blend_sigma < 0:
            yield f"cp_blend_sigma must be >= 0 (0: hard edges), got {self.cp_blend_sigma}"

    # -- derived values --------------------------------------------------------------------------
    @property
    def warmup(self) -> int:
        """Warmup steps actually used."""
        return self.warmup_steps if self.warmup_steps is not None else self.steps // 20

    @property
    def workers(self) -> int:
        """DataLoader workers actually used."""
        return self.num_workers if self.num_workers is not None else min(8, max(1, (os.cpu_count() or 2) - 1))

    @property
    def copy_paste_tag(self) -> str:
        """The copy-paste part of the run name: "" (none), _cp-MODE-DONORS or _classmix[-MODE].

        MODE is online, offline or offlineN (N copies per image); DONORS is uniform, inverse or the
        pasted classes (_cp-online-battery.clothing). Probability, scale, objects and blending are not
        spelled out: a name already holding another config gets the config hash appended.
        """
        if self.copy_paste == "none":
            return ""
        mode = "online" if self.copy_paste == "online" else f"offline{self.cp_copies if self.cp_copies > 1 else ''}"
        if self.cp_donors == "classmix":
            return "_classmix" + ("" if mode == "online" else f"-{mode}")
        donors = ".".join(n.lower().replace(" ", "") for n in self.cp_classes) if self.cp_classes else self.cp_donors
        return f"_cp-{mode}-{donors}"

    # -- serialisation ---------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Plain JSON/YAML-ready dict (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def identity(self) -> dict:
        """The fields that determine the trained weights (everything but bookkeeping)."""
        keep = {f.name for f in fields(self) if f.metadata["identity"]}
        return {k: v for k, v in self.to_dict().items() if k in keep}

    def config_hash(self, length: int = 6) -> str:
        """Short stable hash of `identity()`."""
        text = json.dumps(self.identity(), sort_keys=True, default=str)
        return hashlib.sha1(text.encode()).hexdigest()[:length]

    def replace(self, **changes) -> "TrainConfig":
        """A validated copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, d: dict, **overrides) -> "TrainConfig":
        """Build from a dict; unknown keys raise an error listing the valid fields."""
        d = {**(d or {}), **{k: v for k, v in overrides.items()}}
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s) {unknown}; valid fields: {', '.join(sorted(names))}")
        return cls(**d)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, **overrides) -> "TrainConfig":
        """Load a YAML file (keys = field names); keyword overrides win."""
        path = Path(path)
        try:
            d = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise ValueError(f"{path}: invalid YAML: {e}") from None
        if not isinstance(d, dict):
            raise ValueError(f"{path}: expected a mapping of TrainConfig fields, got {type(d).__name__}")
        try:
            return cls.from_dict(d, **overrides)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{path}: {e}") from None

    def to_yaml(self, path: str | os.PathLike | None = None) -> str:
        """YAML text of the config; written atomically to `path` when given."""
        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            with atomic_open(path, "w", encoding="utf-8") as f:
                f.write(text)
        return text



# -- command line ------------------------------------------------------------------------------------
def _parse_value(kind):
    """argparse type for a field annotation (int, float, str, bool or unions); 'none' reads as None."""
    args = typing.get_args(kind)
    if typing.get_origin(kind) is tuple:  # tuple[float, float] or tuple[str, ...]: the element type
        kind, args = args[0], ()
    types = [t for t in (args or (kind,)) if t is not type(None)]
    optional = type(None) in args

    def parse(text: str):
        if optional and text.lower() in ("none", "null"):
            return None
        for t in (int, float, str):
            if t in types:
                try:
                    return t(text)
                except ValueError:
                    pass
        raise argparse.ArgumentTypeError(f"cannot read {text!r} as {' or '.join(t.__name__ for t in types)}")

    parse.__name__ = "/".join(t.__name__ for t in types)  # argparse names the type in its errors
    return parse


def add_config_arguments(parser: argparse.ArgumentParser, cls=None) -> None:
    """One option per field of a config dataclass, its help and type read from the field itself.

    Options default to SUPPRESS, so only what the user typed overrides a YAML file or the defaults.
    """
    cls = cls or TrainConfig
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        cli = dict(f.metadata["cli"])
        flag = cli.pop("flag", "--" + f.name.replace("_", "-"))
        text = f.metadata["help"].replace("%", "%%")
        if hints[f.name] is bool:
            parser.add_argument(flag, dest=f.name, action="store_true", default=argparse.SUPPRESS, help=text)
            continue
        if "choices" not in cli:
            cli["type"] = _parse_value(hints[f.name])
        parser.add_argument(flag, dest=f.name, default=argparse.SUPPRESS, help=f"{text} (default {f.default!r})", **cli)


def config_from_arguments(args: argparse.Namespace, cls=None, *, yaml_path=None):
    """The config of parsed options: a YAML file's fields (when given) overridden by the options typed.

    A cp_* option typed while copy & paste is off is refused: it would be ignored. (A YAML file may hold
    cp_* fields with copy_paste none: a branch inherits its trunk's recipe and stops pasting.)
    """
    cls = cls or TrainConfig
    overrides = {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}
    cfg = cls.from_yaml(yaml_path, **overrides) if yaml_path else cls.from_dict({}, **overrides)
    typed = ["--" + name.replace("_", "-") for name in overrides if name.startswith("cp_")]
    if typed and getattr(cfg, "copy_paste", None) == "none":
        raise ValueError(f"{', '.join(typed)} set{'s' if len(typed) == 1 else ''} copy & paste, which is off "
                         "(copy_paste none): add --copy-paste online or offline, or drop "
                         f"{'it' if len(typed) == 1 else 'them'}")
    return cfg
