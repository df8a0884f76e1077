"""`train(cfg) -> Run`: the one training loop every notebook and the CLI use.

Single process: `train(cfg)` or `python -m trashlib train ...`. Several GPUs:
`accelerate launch -m trashlib train ...` (Hugging Face Accelerate; `batch_size` is per device and
only the main process writes files). A finished run with the same config is reused, not retrained;
`resume=True` continues an unfinished one from its last checkpoint and reaches the same weights as an
uninterrupted run (data order, augmentation and RNG states are all part of the checkpoint), a branch
included, as long as its trunk has not been trained again meanwhile (then it is refused);
`restart=True` starts it over, and without either an interrupted run is refused, never wiped. A loss
or weights turning NaN or infinite stop the run before anything non-finite is saved.
"""
from __future__ import annotations

import math
import random
import time
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from tqdm.auto import tqdm

from trashlib import paths, runs
from trashlib.config import TrainConfig
from trashlib.data import TrashDataset, build_train_dataset, resolve_data_root, train_fingerprint
from trashlib.data.instances import small_objects
from trashlib.data.pasted import online_paster
from trashlib.io import write_json
from trashlib.models import build_model
from trashlib.models.sizes import presets_fingerprint
from trashlib.predict.batching import item_loader
from trashlib.progress import shown
from trashlib.runs.checkpoint import (BEST_FILE, checkpoint_step, last_checkpoint, load_training_state, restore_rng,
                                      save_training_state, save_weights)
from trashlib.training.augment import transform_from_config
from trashlib.training.folder import (MetricsLog, finished_run, resuming_run, start_folder, truncate_metrics,
                                      trunk_identity)
from trashlib.training.sampling import TrainStream, sampling_factors, train_loader
from trashlib.training.schedule import lr_factor, set_lr
from trashlib.training.validate import cdb_weights, validate


def _accelerator(cfg: TrainConfig):
    # Accelerate keeps a process-wide state that refuses a second mixed-precision setting; notebooks
    # call train() several times per kernel, so clear it (the distributed PartialState is kept).
    AcceleratorState._reset_state()
    GradientState._reset_state()
    return Accelerator(mixed_precision=resolve_precision(cfg.mixed_precision),
                       gradient_accumulation_steps=cfg.grad_accum)


def _cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (x86 AVX512-BF16 or AMX-BF16; read from Linux's cpuinfo)."""
    flags = runs.folder.cpuinfo("flags").split()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(mixed_precision: str) -> str:
    """The precision a run uses: `auto` becomes bf16 where it is native (faster: 1.2-1.3x per CPU step
    measured with AVX512-BF16), and "no" elsewhere (emulated bf16 would be slower)."""
    if mixed_precision != "auto":
        return mixed_precision
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "no"
    return "bf16" if _cpu_has_native_bf16() else "no"


def make_optimizer(model, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW over the model's parameter groups, fused where torch has the kernel (CPU and CUDA).

    The fused kernel updates every parameter in one pass; the per-parameter loop issued some 3,000
    small tensor operations a step for the tiny Mask2Former's 291 tensors (41 ms against 13 ms with
    gradient clipping, measured on 2 cores). The update rule is the same.
    """
    groups = model.param_groups(lr=cfg.lr, weight_decay=cfg.weight_decay, backbone_lr_mult=cfg.backbone_lr_mult)
    devices = {p.device.type for group in groups for p in group["params"]}
    return torch.optim.AdamW(groups, fused=devices <= {"cpu", "cuda"} or None)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class TrainingDiverged(FloatingPointError):
    """The loss or the weights became NaN or infinite; the run stopped before saving them."""


def _diverged(run_dir: Path, cfg: TrainConfig, what: str, step: int) -> TrainingDiverged:
    last = last_checkpoint(run_dir / "checkpoints")
    kept = (f"Nothing non-finite was saved: the last good checkpoint is step {checkpoint_step(last)}, but resuming "
            "it (--resume) repeats the same steps exactly, so" if last is not None else
            "No checkpoint had been written, so the run folder is removed;")
    remedies = [f"a lower learning rate (--lr, now {cfg.lr:g})"]
    if cfg.mixed_precision != "no":
        remedies.append(f"full precision (--mixed-precision no, now {cfg.mixed_precision})")
    remedies.append(f"a tighter --grad-clip (now {cfg.grad_clip})")
    return TrainingDiverged(f"{run_dir}: training stopped: the {what} became NaN or infinite at step {step}. {kept} "
                            f"retrain with {' or '.join(remedies)}; a changed setting trains a new run folder.")


def _all_finite(raw) -> torch.Tensor:
    tensors = [t for t in raw.state_dict().values() if t.is_floating_point()]
    return torch.stack([torch.isfinite(t).all() for t in tensors]).all() if tensors else torch.tensor(True)


def train(cfg: TrainConfig, *, model=None, force: bool = False, stop_after: int | None = None,
          progress: bool | None = None) -> runs.Run:
    """Train `cfg` (or reuse its finished run) and return the `Run`.

    `model` replaces `build_model(cfg.model, ...)` (a SegmentationModel instance, for tests and
    experiments); `force` retrains a finished (or interrupted) run from step 0; `stop_after=k` stops
    after step k as an interruption would (last checkpoint written, run left unfinished, resumable
    with resume=True). An interrupted run is continued with `cfg.resume` or started over with
    `cfg.restart`; without either it is refused, never wiped. A loss or weights turning NaN or infinite
    stop the run with `TrainingDiverged` before anything non-finite is saved. A run that fails before
    its first checkpoint removes what it wrote, so no half-made run folder is left behind.
    """
    cfg = cfg.replace(data_root=str(resolve_data_root(cfg.data_root)))
    trunk = trunk_sha1 = None
    if cfg.init_from is not None:  # one spelling per trunk (its name beside this run, else its full path)
        base = Path(cfg.out_dir) if cfg.out_dir else runs.runs_dir()
        trunk = runs.resolve_run(cfg.init_from, root=base)
        if not trunk.finished:
            raise ValueError(f"init_from {trunk.path}: the trunk run has not finished; train it first")
        same = trunk.path.parent.resolve() == base.resolve()
        cfg = cfg.replace(init_from=trunk.name if same else str(trunk.path.resolve()))
        trunk_sha1 = trunk_identity(trunk.path)
    run_dir = runs.run_dir_for(cfg)
    if not force and finished_run(run_dir, cfg, trunk_sha1=trunk_sha1):
        print(f"reusing finished run {paths.shown(run_dir)} (force=True retrains)")
        return runs.Run(run_dir)
    runs.check_run_folder(run_dir)
    resuming = resuming_run(run_dir, cfg, force, trunk_sha1=trunk_sha1)
    accelerator = _accelerator(cfg)
    main = accelerator.is_main_process
    _seed_everything(cfg.seed)
    # what can fail on bad input happens before the folder is touched (the data set-up draws no random numbers)
    if model is None:
        model = build_model(cfg.model, size=cfg.size, pretrained=cfg.pretrained)
    grown = set()
    if trunk is not None and not resuming:  # a branch: the trunk's last weights and Adam moments, its own schedule
        grown = _load_trunk(model, trunk, cfg)
        model.train()
    # checked before an offline pasted set is written; the main process writes that set once, the others read it
    with accelerator.main_process_first():
        data = build_train_dataset(cfg)
    repeat = sampling_factors(data, cfg)
    if repeat is not None and main and shown(progress):
        rule = f"repeat factor sampling (t = {cfg.repeat_threshold})" if cfg.repeat_threshold else "repeat factors"
        extra = f", the extra sets' images {cfg.extra_repeat:g}x" if cfg.extra_repeat != 1 and cfg.extra_train else ""
        print(f"{rule}{extra}: {int((repeat > 1).sum())} of {len(repeat)} images repeated, up to "
              f"{repeat.max():.2f}x; an epoch draws about {repeat.sum():.0f} images")
    stream = TrainStream(data, transform_from_config(cfg), seed=cfg.seed, paste=online_paster(cfg), repeat=repeat)
    val_set = TrashDataset(cfg.data_root, split=cfg.val_split) if cfg.val_split else None
    accelerator.wait_for_everyone()  # every process has read the folder before the main one changes it
    try:
        return _run_loop(cfg, accelerator, model, stream, val_set, run_dir, resuming=resuming,
                         trunk=None if resuming else trunk, trunk_sha1=trunk_sha1, grown=grown,
                         stop_after=stop_after, progress=progress)
    except BaseException:
        if main and last_checkpoint(run_dir / "checkpoints") is None:
            runs.clear_run(run_dir, config=True)  # a failed start: nothing worth keeping, no half-made run
        raise


def _run_loop(cfg, accelerator, model, stream, val_set, run_dir: Path, *, resuming: bool, stop_after, progress,
              trunk=None, trunk_sha1=None, grown=frozenset()):
    main, device = accelerator.is_main_process, accelerator.device
    ckpt_dir = run_dir / "checkpoints"
    if main:
        start_folder(run_dir, cfg, str(device), resuming=resuming, precision=str(accelerator.mixed_precision),
                     trunk_sha1=trunk_sha1)
    accelerator.wait_for_everyone()
    optimizer = make_optimizer(model, cfg)
    for group in optimizer.param_groups:
        group["initial_lr"] = group["lr"]
    model, optimizer = accelerator.prepare(model, optimizer)
    raw = accelerator.unwrap_model(model)
    rank, world = accelerator.process_index, accelerator.num_processes
    if world > 1:
        torch.manual_seed(cfg.seed + rank)  # same init on every rank (above), different randomness now
    state = {"step": 0, "best_miou": None, "class_weights": None, "elapsed": 0.0}
    if trunk is not None:
        _continue_moments(optimizer, trunk, grown=grown)
    if resuming:
        try:
            _restore(accelerator, raw, optimizer, ckpt_dir, state)
        except ValueError as e:
            raise ValueError(f"cannot resume {run_dir.name}: {e}. Start it over with --restart (restart=True)") from None
        if world > 1:  # the checkpoint holds the main process's RNG; give each rank its own again
            torch.manual_seed(cfg.seed + 1000 * state["step"] + rank)
        if main:
            truncate_metrics(run_dir / runs.METRICS_FILE, state["step"])
            print(f"resuming {run_dir.name} from step {state['step']}")
    log = MetricsLog(run_dir / runs.METRICS_FILE, main)

    end = cfg.steps if stop_after is None else min(cfg.steps, stop_after)
    batches = iter(train_loader(stream, start=state["step"] * cfg.grad_accum, end=end * cfg.grad_accum,
                                batch_size=cfg.batch_size, rank=rank, world=world, workers=cfg.workers,
                                pin_memory=device.type == "cuda"))
    evaluator = _Evaluator(cfg, accelerator, raw, log, ckpt_dir, state, val_set) if val_set is not None else None
    save_every = cfg.save_every or cfg.eval_every

    # the first step whose loss was not finite (steps + 1: none yet), kept on the device: no sync per step
    none = cfg.steps + 1
    first_bad = torch.full((1,), none, device=device, dtype=torch.long)

    def guard(done: int, *, weights: bool) -> None:
        """Before anything is logged or saved: stop if a loss since the last check, or the weights, are not finite."""
        bad = int(accelerator.gather(first_bad).min())
        if bad != none:
            raise _diverged(run_dir, cfg, "loss", bad)
        if weights and int(accelerator.gather(_all_finite(raw).reshape(1).long()).min()) == 0:
            raise _diverged(run_dir, cfg, "weights", done)

    model.train()
    bar = tqdm(total=cfg.steps, initial=state["step"], disable=not (main and shown(progress)), desc=run_dir.name)
    t0 = time.perf_counter() - state["elapsed"]
    loss_sum, loss_n = torch.zeros((), device=device), 0
    try:
        for step in range(state["step"], end):
            factor = lr_factor(step, steps=cfg.steps, warmup=cfg.warmup, power=cfg.poly_power, schedule=cfg.schedule,
                               decay_fraction=cfg.decay_fraction)
            set_lr(optimizer, factor)
            for _ in range(cfg.grad_accum):
                images, masks = next(batches)
                x = images.to(device, non_blocking=True).float().div_(255)
                y = masks.to(device, non_blocking=True).long()
                with accelerator.accumulate(model):
                    loss = model(x, y).loss
                    accelerator.backward(loss)
                    if accelerator.sync_gradients and cfg.grad_clip:
                        accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                loss = loss.detach()
                loss_sum += loss
                loss_n += 1
                first_bad.copy_(torch.where((first_bad == none) & ~torch.isfinite(loss), step + 1, first_bad))
            done = state["step"] = step + 1
            state["elapsed"] = time.perf_counter() - t0
            bar.update(1)
            evaluate = evaluator and ((cfg.eval_every and done % cfg.eval_every == 0) or done == cfg.steps)
            save = done == end or (save_every and done % save_every == 0)
            if done % cfg.log_every == 0 or done == end:
                loss_value = accelerator.reduce(loss_sum / loss_n, "mean").item()  # the only sync per log line
                if not math.isfinite(loss_value):
                    guard(done, weights=False)
                    raise _diverged(run_dir, cfg, "loss", done)  # finite losses whose sum overflowed
                loss_sum.zero_()
                loss_n = 0
                log({"kind": "train", "step": done, "loss": loss_value, "lr": cfg.lr * factor, "time": state["elapsed"]})
                bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{cfg.lr * factor:.2e}", refresh=False)
            if evaluate or save:
                guard(done, weights=True)
            if evaluate:
                evaluator(done)
            if save:
                _save_last(accelerator, raw, optimizer, ckpt_dir, state, cfg)
    finally:
        bar.close()
    if main and state["step"] == cfg.steps:
        write_json(run_dir / runs.FINISHED_FILE, {"step": state["step"], "best_miou": state["best_miou"],
                                                  "elapsed_s": state["elapsed"], "data_sha1": train_fingerprint(cfg),
                                                  "presets_sha1": presets_fingerprint(cfg.size)})
    accelerator.wait_for_everyone()
    return runs.Run(run_dir)


def _restore(accelerator, raw, optimizer, ckpt_dir: Path, state: dict) -> None:
    """Load model, optimizer, RNG, grad-scaler and loop state from the last checkpoint."""
    model_state, optimizer_state, saved = load_training_state(ckpt_dir)
    raw.load_state_dict(model_state)
    optimizer.load_state_dict(optimizer_state)
    restore_rng(saved.pop("rng_tensors"), saved.pop("rng"))
    scaler = saved.get("scaler")
    if scaler and accelerator.scaler is not None:
        accelerator.scaler.load_state_dict(scaler)
    state.update({k: saved[k] for k in state})
    if state["class_weights"] is not None:
        raw.set_class_weights(torch.tensor(state["class_weights"], dtype=torch.float32))


def _load_trunk(model, trunk, cfg: TrainConfig) -> set[int]:
    """Load the trunk's last weights into `model`; the ids of the parameters the trunk lacks, which only a
    model grown from the trunk's architecture may have (`SegmentationModel.grown_parts`) and which start fresh."""
    fault = None
    try:
        result = model.load_state_dict(trunk.weights("last"), strict=False)
    except RuntimeError as e:  # shapes that differ
        fault = str(e).splitlines()[0].rstrip(":. ")
    else:
        parts = getattr(model, "grown_parts", ())
        foreign = [k for k in result.missing_keys if not any(part in k for part in parts)]
        if result.unexpected_keys or foreign:
            fault = (f"{len(result.unexpected_keys)} tensors it has are not in the model, e.g. "
                     f"{result.unexpected_keys[0]}" if result.unexpected_keys else
                     f"{len(foreign)} tensors of the model are not in it, e.g. {foreign[0]}")
    if fault is not None:
        raise ValueError(f"init_from {trunk.path}: its weights do not fit {cfg.model}-{cfg.size} ({fault})")
    params = dict(model.named_parameters())
    return {id(params[k]) for k in result.missing_keys if k in params}


def _continue_moments(optimizer, trunk, *, grown=frozenset()) -> None:
    """Start a branch's AdamW from the trunk's last moments (and step counts); its groups keep their own lr.

    A fresh AdamW moves every weight by about lr in its first steps (m/sqrt(v) = sign(g) at step 1,
    whatever the gradient's size), which knocks a converged trunk back before the branch learns
    anything: measured on the cpu trunk (0.293), 30 steps at lr 1e-4 lost 0.019 val mIoU from fresh
    moments and 0.013 from the trunk's. With them, each weight's step stays scaled by its own gradient
    history, as it was at the trunk's end. The parameters a grown model adds (`grown`) start fresh.
    """
    _, trunk_state, _ = load_training_state(trunk.path / "checkpoints")
    mine = optimizer.state_dict()
    every = [p for group in optimizer.param_groups for p in group["params"]]
    # the trunk's parameters are this model's less the grown ones (`grown`, the ids of parameters the trunk
    # lacks), in the same order: the groups' rule is the same, and a grown part adds names, never moves them
    where = [i for i, p in enumerate(every) if id(p) not in grown]
    params = [every[i] for i in where]
    moments = trunk_state["state"]
    for index, param in enumerate(params):
        saved = moments.get(index)
        if saved is not None and saved["exp_avg"].shape != param.shape:
            raise ValueError(f"init_from {trunk.path}: its optimizer state does not fit this model "
                             f"(parameter {index}: {tuple(saved['exp_avg'].shape)} against {tuple(param.shape)})")
    if len(moments) and max(moments) >= len(params):
        raise ValueError(f"init_from {trunk.path}: its optimizer holds {max(moments) + 1} parameters, "
                         f"this model {len(params)}")
    optimizer.load_state_dict({"state": {where[k]: v for k, v in moments.items()}, "param_groups": mine["param_groups"]})


def _save_last(accelerator, raw, optimizer, ckpt_dir: Path, state: dict, cfg: TrainConfig) -> None:
    if accelerator.is_main_process:
        order = {"seed": cfg.seed, "micro_batch": state["step"] * cfg.grad_accum}  # + sampling's rule
        scaler = accelerator.scaler.state_dict() if accelerator.scaler is not None else None
        save_training_state(ckpt_dir, model_state=raw.state_dict(), optimizer_state=optimizer.state_dict(),
                            state={**state, "data_order": order, "scaler": scaler})
    accelerator.wait_for_everyone()


class _Evaluator:
    """Validation at a step: scores to metrics.jsonl, best checkpoint, CDB class weights."""

    def __init__(self, cfg, accelerator, raw, log, ckpt_dir, state, dataset):
        self.cfg, self.accelerator, self.raw, self.log = cfg, accelerator, raw, log
        self.ckpt_dir, self.state = ckpt_dir, state
        self.dataset = dataset
        n = len(self.dataset) if cfg.eval_max_images is None else min(cfg.eval_max_images, len(self.dataset))
        self.n = n
        self.indices = range(accelerator.process_index, n, accelerator.num_processes)  # a shard per process

    def _reduce(self, confusion: np.ndarray) -> np.ndarray:
        total = self.accelerator.reduce(torch.from_numpy(confusion).to(self.accelerator.device), "sum")
        return total.cpu().numpy()

    def __call__(self, step: int) -> None:
        acc, cfg = self.accelerator, self.cfg
        loader = item_loader(self.dataset, self.indices, batch_size=cfg.batch_size, workers=min(cfg.workers, 2))
        final = step == cfg.steps  # its images' confusions are kept, for the paired comparisons (scoring.compare)
        c = self.raw.num_classes
        per_image = np.zeros((self.n, c, c), np.int64) if final else None
        hits = np.zeros((self.n, 2, c), np.int64) if final else None
        scores = validate(self.raw, loader, device=acc.device, num_classes=c, autocast=acc.autocast,
                          reduce=self._reduce, work_size=cfg.work_size, per_image=per_image,
                          objects=small_objects(self.dataset) if final else None, hits=hits)
        if final:
            per_image, hits = self._reduce(per_image), self._reduce(hits)
            if acc.is_main_process:
                runs.save_eval_images(self.ckpt_dir.parent / runs.EVAL_IMAGES_FILE, step,
                                      self.dataset.file_names[:self.n], per_image, objects=hits)
        record = {"kind": "eval", "step": step, "split": cfg.val_split, "images": self.n, **scores.as_dict(),
                  "time": self.state["elapsed"]}
        if np.isfinite(scores.miou) and (self.state["best_miou"] is None or scores.miou > self.state["best_miou"]):
            self.state["best_miou"] = scores.miou
            if acc.is_main_process:
                save_weights(self.ckpt_dir / BEST_FILE, self.raw.state_dict(),
                             metadata={"step": step, "mIoU": scores.miou})
        if cfg.class_weighting == "cdb":
            weights = cdb_weights(scores.per_class_iou, tau=cfg.cdb_tau)
            self.raw.set_class_weights(torch.tensor(weights, dtype=torch.float32))
            self.state["class_weights"] = record["class_weights"] = weights.tolist()
        self.log(record)
        acc.print(f"step {step}: val mIoU {scores.miou:.4f}  pixel acc {scores.pixel_accuracy:.4f}")
