"""`TrainConfig`: every setting of one training run, validated, saved as config.yaml in the run folder.

A config is a dataclass with defaults (no registries, no inheritance chains): the notebooks and
`python -m trashlib train` build one, `train(cfg)` runs it. Fields that change the result are the
run's identity (`identity()`, `config_hash()`); bookkeeping fields (run name, output folder, resume,
worker count, logging interval) are not, so changing them reuses or resumes the same run.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, fields
from pathlib import Path

MIXED_PRECISION = ("no", "fp16", "bf16")
CLASS_WEIGHTING = (None, "cdb")
# Fields that never change what is trained (DataLoader workers do not change the data order:
# every item is a pure function of (seed, position)).
NON_IDENTITY = ("run_name", "out_dir", "resume", "num_workers", "log_every")


@dataclass
class TrainConfig:
    """Settings of one training run (see the field comments); `train(cfg)` runs it."""

    model: str = "segformer"                  # factory name, see trashlib.models.build_model
    size: str = "tiny"                        # model size preset
    pretrained: str | None = None             # hub id or local folder for build_model (None: random init)
    data_root: str | None = None              # None: trashlib.paths.resolve_data_root()
    train_split: str = "train"
    val_split: str | None = "val"             # None: no evaluation
    steps: int = 1000                         # optimizer steps
    batch_size: int = 8                       # images per device per micro-batch
    grad_accum: int = 1                       # micro-batches per optimizer step
    image_size: int = 512                     # square training crop
    lr: float = 1e-4                          # head learning rate (AdamW)
    weight_decay: float = 0.05
    backbone_lr_mult: float = 0.1
    warmup_steps: int | None = None           # linear warmup; None: 5% of steps
    poly_power: float = 0.9                   # lr x (1 - t)^power after warmup
    # Max global gradient norm (None: no clipping). AdamW is invariant to a constant gradient scale,
    # so a full-model clip only re-weights steps against each other: Mask2Former's 0.01 clips EVERY
    # step (training on normalised gradients, robust to the matching loss's spikes); 1.0 clips only
    # the spikes of random-init heads and leaves SegFormer/UperNet's usual steps untouched. 1.0 suits
    # every model of the factory; set 0.01 to follow the Mask2Former recipe exactly.
    grad_clip: float | None = 1.0
    scale_range: tuple[float, float] = (0.5, 2.0)  # random rescale of the image, then crop image_size
    hflip: float = 0.5                        # horizontal flip probability
    color_jitter: float = 0.2                 # brightness/contrast/saturation strength (0: off)
    eval_every: int | None = 500              # evaluate every N steps (and always at the end)
    eval_max_images: int | None = None        # None: the whole validation split
    save_every: int | None = None             # last-checkpoint interval; None: at every evaluation
    seed: int = 0
    mixed_precision: str = "no"               # "no", "fp16" or "bf16"
    num_workers: int | None = None            # DataLoader workers; None: min(8, cores - 1)
    class_weighting: str | None = None        # None or "cdb": w_c ~ (1 - IoU_c)^cdb_tau after each eval
    cdb_tau: float = 1.0
    log_every: int = 10                       # steps per metrics.jsonl loss line
    run_name: str | None = None               # None: generated (see runs.run_name)
    out_dir: str | None = None                # None: trashlib.paths.RUNS_DIR
    resume: bool = False                      # continue an unfinished run from its last checkpoint

    def __post_init__(self):
        if isinstance(self.scale_range, list):
            self.scale_range = tuple(self.scale_range)
        for name in ("data_root", "out_dir"):
            if isinstance(getattr(self, name), os.PathLike):
                setattr(self, name, str(getattr(self, name)))
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

        for name in ("steps", "batch_size", "grad_accum", "image_size", "log_every"):
            yield from positive_int(name)
        for name in ("eval_every", "eval_max_images", "save_every"):
            yield from positive_int(name, allow_none=True)
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
        if self.grad_clip is not None and self.grad_clip <= 0:
            yield f"grad_clip must be > 0 or None, got {self.grad_clip}"
        lo_hi = self.scale_range
        if len(lo_hi) != 2 or not (0 < lo_hi[0] <= lo_hi[1]):
            yield f"scale_range must be (low, high) with 0 < low <= high, got {lo_hi!r}"
        if not 0 <= self.hflip <= 1:
            yield f"hflip must be a probability in [0, 1], got {self.hflip}"
        if not 0 <= self.color_jitter <= 1:
            yield f"color_jitter must be in [0, 1], got {self.color_jitter}"
        if self.mixed_precision not in MIXED_PRECISION:
            yield f"mixed_precision must be one of {MIXED_PRECISION}, got {self.mixed_precision!r}"
        if self.class_weighting not in CLASS_WEIGHTING:
            yield f"class_weighting must be one of {CLASS_WEIGHTING}, got {self.class_weighting!r}"
        if self.class_weighting and not self.val_split:
            yield "class_weighting='cdb' needs a val_split (weights come from validation IoU)"
        if self.cdb_tau < 0:
            yield f"cdb_tau must be >= 0, got {self.cdb_tau}"
        if self.num_workers is not None and self.num_workers < 0:
            yield f"num_workers must be >= 0 or None, got {self.num_workers}"

    # -- derived values --------------------------------------------------------------------------
    @property
    def warmup(self) -> int:
        """Warmup steps actually used."""
        return self.warmup_steps if self.warmup_steps is not None else self.steps // 20

    @property
    def workers(self) -> int:
        """DataLoader workers actually used."""
        return self.num_workers if self.num_workers is not None else min(8, max(1, (os.cpu_count() or 2) - 1))

    # -- serialisation ---------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Plain JSON/YAML-ready dict (tuples as lists)."""
        d = dataclasses.asdict(self)
        d["scale_range"] = list(self.scale_range)
        return d

    def identity(self) -> dict:
        """The fields that determine the trained weights (everything but bookkeeping)."""
        return {k: v for k, v in self.to_dict().items() if k not in NON_IDENTITY}

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
        import yaml

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
        import yaml

        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            from trashlib.io import atomic_open

            with atomic_open(path, "w", encoding="utf-8") as f:
                f.write(text)
        return text

