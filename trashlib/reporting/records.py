"""The notebooks' metrics records: one typed, versioned schema per notebook (reports/metrics/<notebook>.json).

Each numbered notebook writes one record class (`RECORDS[notebook]`) and the wrap-up page, later
notebooks and 06's teacher read it back as that class: every key that crosses from one notebook to
another is a field declared here, with its type, so no reader finds anything by matching words.

- A record is checked when it is made and when it is read: every field holds a value of its declared
  type (an mIoU in [0, 1], a spread >= 0, a count, run names, nested records), non-finite numbers are
  refused (`store.save_metrics` writes NaN as null, so a field that may be empty is `| None`), and a key
  the schema does not declare is refused. The error names the file and the key.
- The file holds `"schema": <notebook>` and `"version": <n>`. A file of another version (one written
  before this schema, or by a newer trashlib) is refused (`store.load_metrics` adds: run the notebook again).
- Nested records: `ArmRecord` (an arm over seeds, `compare.variant_record`: 02's baseline, 03's models,
  04 and 06's variants, 05's noise) and `StageRecord` (one of 05's stages, `stages.stage_records`).
  A field typed with a record takes that record or the dict the helpers return.

Display tables (`table`, sweeps, curves) are `list[dict]`: rows the notebook shows and the wrap-up
does not read.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Union

import numpy as np


# value kinds beyond the JSON types: the first argument of Annotated is the JSON type, the second the range
MIoU = Annotated[float, "an mIoU in [0, 1]"]
Share = Annotated[float, "a share in [0, 1]"]
Spread = Annotated[float, "a spread >= 0"]
Count = Annotated[int, "a count >= 0"]
NonNegative = Annotated[float, "a number >= 0"]
_RANGES = {"an mIoU in [0, 1]": (0.0, 1.0), "a share in [0, 1]": (0.0, 1.0), "a spread >= 0": (0.0, math.inf),
           "a count >= 0": (0, math.inf), "a number >= 0": (0.0, math.inf)}


def jsonable(obj):
    """`obj` as JSON values: numpy scalars and arrays as Python numbers and lists, tuples as lists, paths as
    text, mapping keys as text, and NaN or infinity as None (null: "no value"). A record inside is kept as
    it is (`Record.as_dict` makes it JSON)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


class RecordError(ValueError):
    """A metrics record that does not match its schema: the message names the key path and the fault."""


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check(value, kind, at: str):
    """`value` checked against the annotation `kind` (nested records made from dicts); a RecordError naming `at`."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if kind is Any:  # free-form: made records hold no NaN (`jsonable`), read ones were refused it (`from_dict`)
        return value
    if origin is Annotated:
        value = _check(value, args[0], at)
        low, high = _RANGES[args[1]]
        if value is not None and not low <= value <= high:
            raise RecordError(f"{at}: must be {args[1]}, got {_shown(value)}")
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        problems = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _check(value, option, at)
            except RecordError as e:
                problems.append(str(e))
        raise RecordError(problems[0] if len(problems) == 1 else f"{at}: {_shown(value)} is none of the kinds "
                                                                  f"the key takes")
    if isinstance(kind, type) and issubclass(kind, Record):
        if isinstance(value, kind):
            return value
        if not isinstance(value, dict):
            raise RecordError(f"{at}: must be a {kind.__name__} record (a JSON object), got {_shown(value)}")
        return kind.from_dict(value, where=at)
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RecordError(f"{at}: must be a number, got {_shown(value)}")
        return float(value)
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise RecordError(f"{at}: must be a whole number, got {_shown(value)}")
        return value
    if kind in (str, bool):
        if not isinstance(value, kind):
            raise RecordError(f"{at}: must be {'text' if kind is str else 'true or false'}, got {_shown(value)}")
        return value
    if kind is dict or origin is dict:
        if not isinstance(value, dict):
            raise RecordError(f"{at}: must be a mapping (a JSON object), got {_shown(value)}")
        inner = args[1] if args else Any
        return {k: _check(v, inner, f"{at}.{k}") for k, v in value.items()}
    if kind is list or origin is list:
        if not isinstance(value, (list, tuple)):
            raise RecordError(f"{at}: must be a list, got {_shown(value)}")
        inner = args[0] if args else Any
        return [_check(v, inner, f"{at}[{i}]") for i, v in enumerate(value)]
    raise TypeError(f"{at}: the schema uses a kind the checker does not know: {kind!r}")


def _finite(value, at: str) -> None:
    """No NaN or infinity anywhere inside a free-form value."""
    if isinstance(value, float) and not math.isfinite(value):
        raise RecordError(f"{at}: {value} is not a finite number (save_metrics writes NaN as null)")
    if isinstance(value, dict):
        for k, v in value.items():
            _finite(v, f"{at}.{k}" if at else str(k))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _finite(v, f"{at}[{i}]")


@dataclass(kw_only=True)
class Record:
    """A checked record: every field holds its declared kind (checked in __post_init__, after `jsonable`: a
    NaN handed in is "no value", which only a field that may be empty (`| None`) takes)."""

    def __post_init__(self):
        hints = typing.get_type_hints(type(self), include_extras=True)
        for f in dataclasses.fields(self):
            setattr(self, f.name, _check(jsonable(getattr(self, f.name)), hints[f.name], f.name))

    @classmethod
    def from_dict(cls, d: dict, *, where: str = "") -> "Record":
        """The record of a JSON object (a file's, so a non-finite number is a fault, not "no value"): unknown keys
        refused; keys the object lacks take their defaults. Faults are named under `where`."""
        prefix = f"{where}." if where else ""
        if not isinstance(d, dict):
            raise RecordError(f"{where or cls.__name__}: must be a JSON object, got {_shown(d)}")
        _finite(d, where)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise RecordError(f"{prefix}{unknown[0]}: not a key of {cls.__name__} (known: {', '.join(sorted(names))})")
        missing = [f.name for f in dataclasses.fields(cls)
                   if f.name not in d and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        if missing:
            raise RecordError(f"{prefix}{missing[0]}: missing (a {cls.__name__} needs it)")
        try:
            return cls(**d)
        except RecordError as e:
            raise RecordError(f"{prefix}{e}") from None

    def as_dict(self) -> dict:
        """The record as JSON-ready values (nested records as objects)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}


def _plain(value):
    if isinstance(value, Record):
        return value.as_dict()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


@dataclass(kw_only=True)
class NotebookRecord(Record):
    """A record one notebook writes: its file name and schema version are class constants."""

    NOTEBOOK: ClassVar[str] = ""
    VERSION: ClassVar[int] = 1

    def file_dict(self) -> dict:
        """What the metrics file holds: schema and version first, then the fields."""
        return {"schema": self.NOTEBOOK, "version": self.VERSION, **self.as_dict()}

    @classmethod
    def from_file_dict(cls, d, *, where: str) -> "NotebookRecord":
        """The record of a metrics file's JSON object, refusing another schema or version."""
        if not isinstance(d, dict):
            raise RecordError(f"{where}: not a JSON object")
        schema, version = d.get("schema"), d.get("version")
        if schema != cls.NOTEBOOK or version != cls.VERSION:
            found = "no schema version (written before records were versioned)" if version is None else \
                f"schema {schema!r} version {version!r}"
            raise RecordError(f"{where}: {found}; this trashlib reads {cls.NOTEBOOK!r} version {cls.VERSION}")
        body = {k: v for k, v in d.items() if k not in ("schema", "version")}
        try:
            return cls.from_dict(body)
        except RecordError as e:
            raise RecordError(f"{where}: {e}") from None


# -- nested records ----------------------------------------------------------------------------------
@dataclass(kw_only=True)
class ContrastRecord(Record):
    """What a record holds of a contrast against its reference (`compare.Contrast.as_dict`), where it has one:
    delta, its 95% interval, the MDE, the noise it was measured under, the verdict, and the same per class."""

    delta: float | None = None
    delta_ci: list[float] | None = None
    mde: Spread | None = None
    noise: str | None = None
    verdict: str | None = None
    per_class_delta: dict[str, dict | None] | None = None


@dataclass(kw_only=True)
class ArmRecord(ContrastRecord):
    """One arm over its seeds (`compare.variant_record`); against a reference also its contrast
    (`compare.Contrast.as_dict`: delta, delta_ci, mde, noise, verdict) and per_class_delta."""

    val_mIoU_mean: MIoU | None = None
    val_mIoU_std: Spread | None = None
    val_mIoU: list[MIoU | None] = field(default_factory=list)   # one per seed
    seeds: list[Count] = field(default_factory=list)
    per_class_iou: dict[str, MIoU | None] = field(default_factory=dict)
    run_names: list[str] = field(default_factory=list)
    small_object_recall: Share | None = None

    @property
    def seed_count(self) -> int:
        return len(self.seeds) or 1


@dataclass(kw_only=True)
class StageRecord(ContrastRecord):
    """One of 05's stages (`postprocess.stages.stage_records`): its score, what it builds on, the recipe that
    rebuilds it (`postprocess.recipe.StageRecipe.as_dict`), and its contrast against what it builds on."""

    name: str
    val_mIoU: MIoU | None = None
    per_class_iou: dict[str, MIoU | None] = field(default_factory=dict)
    small_object_recall: Share | None = None
    built_on: str | None = None
    runs: list[str] = field(default_factory=list)
    recipe: dict = field(default_factory=dict)
    index: str | None = None
    val_mIoU_std: Spread | None = None      # the first stage: the spread of its run's seeds
    seeds: Count = 1
    seed_runs: list[str] = field(default_factory=list)


@dataclass(kw_only=True)
class PseudoSetRecord(Record):
    """One of 06's pseudo-label sets: its folder, the rule that made it (`PseudoRecipe`'s key), its round."""

    folder: str
    recipe: dict = field(default_factory=dict)
    round: Count = 1
    labelled_share: Share | None = None
    quality: dict[str, Share | None] | None = None            # coverage and accuracy (test labels known)
    quality_per_class: dict[str, dict] | None = None
    draws_per_image: NonNegative | None = None  # how often its students drew each of its images (mean over seeds)


# -- one record per notebook -------------------------------------------------------------------------
@dataclass(kw_only=True)
class EDARecord(NotebookRecord):
    NOTEBOOK: ClassVar[str] = "01_EDA"

    data_root: str = ""
    split: str = ""
    n_images: Count = 0
    n_images_in_split: Count = 0
    n_annotations: Count = 0
    mean_objects_per_image: float = 0.0
    instances_per_class: dict[str, Count] = field(default_factory=dict)
    pixel_share_per_class: dict[str, Share] = field(default_factory=dict)
    background_pixel_share: Share = 0.0
    median_area_share: Share | None = None
    bag_containment_rate: Share | None = None
    objects_inside_bags: dict = field(default_factory=dict)
    mislabel_top_k: Count = 0
    mislabels_known: bool = False
    mislabel_quality: dict | None = None     # `mislabel.ranking_quality` where the known mislabels are given


@dataclass(kw_only=True)
class BaselineRecord(ArmRecord, NotebookRecord):
    """02: the baseline arm over seeds (the ArmRecord fields, at the top level) and the trunk it continues."""

    NOTEBOOK: ClassVar[str] = "02_baseline_mask2former"

    model: str = ""
    size: str = ""
    trunk_run: str | None = None
    budget: dict = field(default_factory=dict)
    branch: dict = field(default_factory=dict)
    colour_floor_mIoU: MIoU | None = None
    target_mIoU: MIoU | None = None
    learning_curve: dict[str, list] = field(default_factory=dict)
    trunk_val_mIoU: MIoU | None = None
    steps_to_target: NonNegative | None = None      # a fit's extrapolation: fractional steps
    train_s_per_step: NonNegative | None = None
    trunk_train_mIoU: MIoU | None = None
    train_val_gap: dict | None = None
    analysis_tta: dict = field(default_factory=dict)
    analysis_val_mIoU: MIoU | None = None
    analysis_images: Count = 0


@dataclass(kw_only=True)
class BackbonesRecord(NotebookRecord):
    """03: each model's arm against the reference (grown from the trunk), and the models trained from scratch."""

    NOTEBOOK: ClassVar[str] = "03_backbones_dinat_semask"

    trunk: str = ""
    reference: str = ""
    seeds: list[Count] = field(default_factory=list)
    branch_steps: Count = 0
    runs: list[str] = field(default_factory=list)
    models: dict[str, ArmRecord] = field(default_factory=dict)   # the reference first
    table: list[dict] = field(default_factory=list)
    per_class_iou: dict[str, dict] = field(default_factory=dict)
    best_model: str | None = None
    best_val_mIoU: MIoU | None = None
    best_verdict: str | None = None
    colour_floor_mIoU: MIoU | None = None
    budget: dict[str, dict] = field(default_factory=dict)
    learning_curve: dict[str, list[dict]] = field(default_factory=dict)
    equal_time: dict = field(default_factory=dict)
    costs: list[dict] = field(default_factory=list)


@dataclass(kw_only=True)
class CopyPasteRecord(NotebookRecord):
    """04: each way of pasting against "none", with the copy-paste fields that define each arm."""

    NOTEBOOK: ClassVar[str] = "04_copy_paste"
    VERSION: ClassVar[int] = 2  # 2: trunk_comparison

    trunk: str = ""
    trunk_copy_paste: str = "none"
    reference: str = "none"
    seeds: list[Count] = field(default_factory=list)
    branch_steps: Count = 0
    variants: dict[str, ArmRecord] = field(default_factory=dict)
    fields: dict[str, dict] = field(default_factory=dict)         # arm -> its copy-paste config fields
    table: list[dict] = field(default_factory=list)
    rare_classes: list[str] = field(default_factory=list)
    claim: dict = field(default_factory=dict)
    trunk_comparison: dict = field(default_factory=dict)   # compare.trunk_comparison_record
    runs: list[str] = field(default_factory=list)


@dataclass(kw_only=True)
class StagesRecord(NotebookRecord):
    """05: the stages (best single run -> votes -> CRF -> overwrite), each judged against what it builds on."""

    NOTEBOOK: ClassVar[str] = "05_crf_ensemble"

    data_root: str | None = None
    val_images: Count = 0
    tta: dict = field(default_factory=dict)
    members: list[str] = field(default_factory=list)
    best_single: dict = field(default_factory=dict)
    noise: ArmRecord | None = None
    weights: list[float] = field(default_factory=list)
    crf_input: str | None = None
    crf_params: dict = field(default_factory=dict)
    crf_sweep: list[dict] = field(default_factory=list)
    overwrite: dict = field(default_factory=dict)
    overwrite_sweep: list[dict] = field(default_factory=list)
    stages: list[StageRecord] = field(default_factory=list)
    rare_classes: list[str] = field(default_factory=list)
    noise_of_first_stage: bool = False
    member_disagreement: dict = field(default_factory=dict)
    against_first: dict[str, dict] = field(default_factory=dict)   # stage -> its contrast with the first stage
    best_stage: str | None = None
    index: str | None = None
    best_index: str | None = None


@dataclass(kw_only=True)
class PseudoRecord(NotebookRecord):
    """06: each pseudo-label set's arm against "none", the teacher, and the sets themselves."""

    NOTEBOOK: ClassVar[str] = "06_pseudo_label"
    VERSION: ClassVar[int] = 2  # 2: branch_steps, pseudo_repeat, each set's draws_per_image

    trunk_run: str = ""
    seeds: list[Count] = field(default_factory=list)
    reference: str = "none"
    branch_steps: Count = 0
    pseudo_repeat: NonNegative = 1.0
    teacher: dict = field(default_factory=dict)
    variants: dict[str, ArmRecord] = field(default_factory=dict)
    table: list[dict] = field(default_factory=list)
    pseudo_sets: dict[str, PseudoSetRecord] = field(default_factory=dict)
    quality_curve: list[dict] | None = None


@dataclass(kw_only=True)
class SubmissionRecord(NotebookRecord):
    """07: what was submitted (a run or one of 05's stages, with the recipe that rebuilt it), and its scores."""

    NOTEBOOK: ClassVar[str] = "07_submission"

    source: str = ""
    stage: str | None = None
    run: str | None = None
    recipe: dict = field(default_factory=dict)
    submission: str = ""
    rows: Count = 0
    valid: bool = False
    tta: dict = field(default_factory=dict)
    val_mIoU: MIoU | None = None
    val_mIoU_from: str = ""
    test_mIoU: MIoU | None = None
    test_per_class_iou: dict[str, MIoU | None] | None = None


RECORDS: dict[str, type[NotebookRecord]] = {r.NOTEBOOK: r for r in (
    EDARecord, BaselineRecord, BackbonesRecord, CopyPasteRecord, StagesRecord, PseudoRecord, SubmissionRecord)}
NOTEBOOKS = tuple(RECORDS)


def record_class(notebook: str) -> type[NotebookRecord]:
    try:
        return RECORDS[notebook]
    except KeyError:
        raise ValueError(f"no metrics record for notebook {notebook!r}; known: {', '.join(RECORDS)}") from None


def schema_table() -> list[dict]:
    """Every record and its fields with their kinds: the written schema (README, docs)."""
    rows = []
    for cls in (*RECORDS.values(), ArmRecord, StageRecord, PseudoSetRecord):
        hints = typing.get_type_hints(cls, include_extras=True)
        for f in dataclasses.fields(cls):
            rows.append({"record": cls.__name__, "notebook": getattr(cls, "NOTEBOOK", ""),
                         "version": getattr(cls, "VERSION", ""), "field": f.name, "kind": _kind_name(hints[f.name])})
    return rows


def schema_markdown() -> str:
    """docs/records.md: every record's fields and kinds, as `schema_table` lists them (a test keeps the file equal
    to this; regenerate it with `python -m trashlib.reporting.records > docs/records.md`)."""
    lines = ["# The metrics records", "",
             "Generated from `trashlib/reporting/records.py`",
             "(`python -m trashlib.reporting.records > docs/records.md`); a test fails when this file and the code",
             "differ. Each notebook writes one record to `reports/metrics/<notebook>.json` with `schema` (the",
             "notebook) and `version`; readers refuse another version, an unknown key, and a value of another kind,",
             "naming the file and the key.", ""]
    by_record: dict[str, list[dict]] = {}
    for row in schema_table():
        by_record.setdefault(row["record"], []).append(row)
    for name, rows in by_record.items():
        first = rows[0]
        where = f" ({first['notebook']}.json, version {first['version']})" if first["notebook"] else " (nested)"
        lines += [f"## {name}{where}", "", "| field | kind |", "|---|---|"]
        lines += [f"| {r['field']} | {r['kind'].replace('|', '&#124;')} |" for r in rows] + [""]
    return "\n".join(lines)


def _kind_name(kind) -> str:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is Annotated:
        return args[1]
    if origin in (Union, types.UnionType):
        return " | ".join("null" if a is type(None) else _kind_name(a) for a in args)
    if origin in (list, dict):
        return f"{origin.__name__}[{', '.join(_kind_name(a) for a in args)}]"
    return getattr(kind, "__name__", str(kind)).replace("NoneType", "null")


if __name__ == "__main__":
    print(schema_markdown())
