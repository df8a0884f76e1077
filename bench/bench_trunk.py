"""Trunk throughput: training images per second of the cpu profile's trunk recipe against an older commit's.

Both sides run `train()` of their own code (the baseline from `git archive <commit>`, in a subprocess
whose PYTHONPATH holds that copy) with the `training:` block of their own cpu profile, for
`--steps` steps without evaluation, on the same data, alternating sides for `--rounds` rounds so that a
change of machine load hits both. Per side: the steady state (median seconds per step after `--warmup`
steps, from metrics.jsonl, so data loading in the DataLoader worker is inside it) and the start-up
(the train() call to the end of its first step; the first round of a side is its coldest).

For the current recipe the bench then measures, in this process:
- the machine's fp32 matrix-multiply peak, and bf16's where it is native (2048^3, best of 5), and the step's matrix work
  (torch.utils.flop_counter), hence the share of the peak one step achieves;
- where a step's time goes: backbone, pixel decoder, transformer decoder, matching, loss (forward hooks;
  backward parts from when the gradients of each part's outputs are complete), optimizer, and the data
  pipeline timed on its own (in `train()` a DataLoader worker prepares batches beside the step).

    .venv/bin/python bench/bench_trunk.py [--baseline d9e3664] [--steps 40] [--rounds 3]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
BASELINE = "d9e3664"  # the trunk recipe before issue 20 (0.50-0.68 s per step on 2 cores)
TARGET = 2.0


# --- one side: runs in a subprocess with that side's trashlib first on the path -----------------------

def run_side(request: dict) -> dict:
    """train() with the profile's trunk block and the bench's overrides; step times and start-up."""
    import yaml

    import trashlib
    from trashlib.config import TrainConfig
    from trashlib.training import train

    package = Path(trashlib.__file__).resolve().parent
    if package != Path(request["package"]).resolve():
        raise SystemExit(f"bench side imported {package}, expected {request['package']}")
    # the profiles moved from trashlib/profiles/ to trashlib/reporting/profiles/; an older commit has the first
    profile = next(p for p in (package / "reporting" / "profiles" / "cpu.yaml", package / "profiles" / "cpu.yaml")
                   if p.exists())
    recipe = yaml.safe_load(profile.read_text())["training"]
    recipe.update(model="mask2former-swin", size="tiny", data_root=request["data"], steps=request["steps"],
                  eval_every=None, val_split=None, log_every=1, out_dir=request["out"], run_name=request["name"])
    cfg = TrainConfig(**recipe)
    start = time.perf_counter()
    run = train(cfg, force=True, progress=False)
    wall = time.perf_counter() - start
    times = [r["time"] for r in run.metrics("train")]
    return {"batch_size": cfg.batch_size, "step_s": [b - a for a, b in zip(times, times[1:])],
            "startup_s": wall - times[-1] + times[0], "threads": __import__("torch").get_num_threads()}


def side(name: str, package_root: Path, args, out: Path, round_: int) -> dict:
    request = {"package": str(package_root / "trashlib"), "data": str(args.data), "steps": args.steps,
               "out": str(out), "name": f"{name}-{round_}"}
    env = {**os.environ, "PYTHONPATH": str(package_root)}
    done = subprocess.run([sys.executable, __file__, "--side", json.dumps(request)], env=env, cwd=package_root,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"bench side {name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def baseline_copy(commit: str, into: Path) -> Path:
    """The package of `commit` (git archive), as a folder to put first on PYTHONPATH."""
    archive = into / "baseline.tar"
    with archive.open("wb") as f:
        subprocess.run(["git", "-C", str(REPO), "archive", commit, "trashlib"], stdout=f, check=True)
    root = into / f"trashlib-{commit}"
    root.mkdir()
    with tarfile.open(archive) as tar:
        tar.extractall(root, filter="data")
    return root


# --- the current recipe, in this process: peak, FLOPs, breakdown -------------------------------------------

def matmul_peak(dtype, n: int = 2048, repeats: int = 5) -> float:
    """Best-of FLOP/s of an n^3 matrix multiply in `dtype` on this machine."""
    import torch

    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best


class StepParts:
    """Times of a Mask2Former training step by part (forward hooks; backward from gradient hooks)."""

    FORWARD = ("backbone", "pixel_decoder", "transformer_decoder", "loss", "matching")

    def __init__(self, model):
        hf = model.hf
        self.modules = {"backbone": hf.model.pixel_level_module.encoder,
                        "pixel_decoder": hf.model.pixel_level_module.decoder,
                        "transformer_decoder": hf.model.transformer_module, "loss": hf.criterion}
        self.t: dict[str, float] = {}
        for name, module in self.modules.items():
            module.register_forward_pre_hook(lambda *_, name=name: self.t.__setitem__(name + ">", time.perf_counter()))
            module.register_forward_hook(lambda m, a, out, name=name: self._after(name, out))
        matcher = hf.criterion.matcher
        match = matcher.match

        def timed_match(*a, **k):
            t = time.perf_counter()
            try:
                return match(*a, **k)
            finally:
                self.t["matching"] = self.t.get("matching", 0.0) + time.perf_counter() - t
        matcher.match = timed_match

    def _after(self, name, out):
        import torch

        self.t[name] = self.t.get(name, 0.0) + time.perf_counter() - self.t.pop(name + ">")
        if name == "loss":
            return
        stack = [out]
        while stack:  # every tensor output: its gradient is complete when the parts after it are done
            o = stack.pop()
            if isinstance(o, torch.Tensor):
                if o.requires_grad:
                    o.register_hook(lambda g, name=name: self.t.__setitem__(name + "_grad", time.perf_counter()))
            elif isinstance(o, (list, tuple)):
                stack.extend(o)
            elif hasattr(o, "values"):
                stack.extend(o.values())

    def step(self, model, optimizer, images, masks, *, autocast, clip: float | None) -> dict[str, float]:
        import torch

        self.t = {}
        t0 = time.perf_counter()
        with autocast():
            loss = model(images.float().div_(255), masks.long()).loss
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip, foreach=True)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        t3 = time.perf_counter()
        t = self.t
        fwd_loss = t["loss"] - t.get("matching", 0.0)
        fwd_rest = (t1 - t0) - sum(t[k] for k in ("backbone", "pixel_decoder", "transformer_decoder", "loss"))
        return {"backbone": t["backbone"] + (t2 - t["backbone_grad"]),
                "pixel decoder": t["pixel_decoder"] + (t["backbone_grad"] - t["pixel_decoder_grad"]),
                "transformer decoder": t["transformer_decoder"] + (t["pixel_decoder_grad"] - t["transformer_decoder_grad"]),
                "matching": t.get("matching", 0.0),
                "loss": fwd_loss + (t["transformer_decoder_grad"] - t1),
                "other (heads, targets)": fwd_rest,
                "optimizer": t3 - t2, "step": t3 - t0}


def analyse_current(args, step_s: float) -> None:
    import numpy as np
    import torch
    import yaml
    from torch.utils.flop_counter import FlopCounterMode

    from trashlib.config import TrainConfig
    from trashlib.data import build_train_dataset
    from trashlib.data.pasted import online_paster
    from trashlib.models import build_model
    from trashlib.training.augment import transform_from_config
    from trashlib.training.loop import make_optimizer, resolve_precision
    from trashlib.training.sampling import TrainStream, sampling_factors, train_loader

    recipe = yaml.safe_load((REPO / "trashlib" / "reporting" / "profiles" / "cpu.yaml").read_text())["training"]
    recipe.update(model="mask2former-swin", size="tiny", data_root=str(args.data), val_split=None)
    cfg = TrainConfig(**recipe)
    bf16 = resolve_precision(cfg.mixed_precision) == "bf16"
    data = build_train_dataset(cfg)
    repeat = sampling_factors(data, cfg)
    stream = TrainStream(data, transform_from_config(cfg), seed=0, paste=online_paster(cfg), repeat=repeat)
    n = args.warmup + args.analyse_steps
    t = time.perf_counter()
    batches = list(train_loader(stream, start=0, end=n, batch_size=cfg.batch_size))
    data_s = (time.perf_counter() - t) / n
    torch.manual_seed(0)
    model = build_model(cfg.model, size=cfg.size).train()
    optimizer = make_optimizer(model, cfg)

    def autocast():
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)

    parts = StepParts(model)
    rows = [parts.step(model, optimizer, *b, autocast=autocast, clip=cfg.grad_clip) for b in batches]
    rows = rows[args.warmup:]
    with FlopCounterMode(display=False) as counter:
        with autocast():
            loss = model(batches[-1][0].float().div_(255), batches[-1][1].long()).loss
        loss.backward()
    optimizer.zero_grad(set_to_none=True)
    flops = counter.get_total_flops()
    # bf16's peak only where it is native: emulated, a 2048^3 bf16 product takes about 15 s on one core,
    # and the trunk does not compute in it there (mixed_precision auto)
    peak_fp32 = matmul_peak(torch.float32)
    if bf16:
        peak = matmul_peak(torch.bfloat16)
        peaks = f"bf16 {peak / 1e9:.0f} GFLOP/s, fp32 {peak_fp32 / 1e9:.0f} GFLOP/s"
    else:
        peak = peak_fp32
        peaks = f"fp32 {peak_fp32 / 1e9:.0f} GFLOP/s (bf16 is not native on this CPU: not measured)"
    print(f"\nmatrix-multiply peak (2048^3, best of 5): {peaks}; the trunk computes in {'bf16' if bf16 else 'fp32'}")
    print(f"matrix work of one step (forward + backward): {flops / 1e9:.1f} GFLOP; at the loop's "
          f"{step_s:.3f} s per step that is {flops / step_s / 1e9:.0f} GFLOP/s, {100 * flops / step_s / peak:.0f}% of "
          f"the {'bf16' if bf16 else 'fp32'} peak")
    med = {k: float(np.median([r[k] for r in rows])) for k in rows[0]}
    step = med.pop("step")
    total = step + data_s
    print(f"\nwhere a step's time goes (median of {len(rows)} steps, batch {cfg.batch_size}, "
          f"{torch.get_num_threads()} threads; step {step * 1000:.0f} ms in this bare loop):")
    for name, value in [*med.items(), ("data (one batch, timed alone)", data_s)]:
        print(f"  {name:32s} {value * 1000:7.1f} ms  {100 * value / total:5.1f}%")


# --- main ---------------------------------------------------------------------------------------------

def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline", default=BASELINE, help="commit whose cpu trunk recipe is the baseline")
    p.add_argument("--data", default=None, help="data root (default: the embedded dataset)")
    p.add_argument("--steps", type=int, default=40, help="steps per side and round")
    p.add_argument("--warmup", type=int, default=5, help="steps of each run left out of the steady state")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--analyse-steps", type=int, default=10, help="steps timed by part")
    p.add_argument("--side", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.side is not None:
        print(json.dumps(run_side(json.loads(args.side))))
        return
    import numpy as np

    from trashlib.data import resolve_data_root

    from trashlib.runs.folder import cpu_name
    from trashlib.training.loop import resolve_precision

    args.data = resolve_data_root(args.data)
    precision = resolve_precision("auto").replace("no", "fp32")
    print(f"machine: {cpu_name()}; mixed_precision auto computes in {precision} here", flush=True)
    if args.steps <= args.warmup + 1:
        raise SystemExit(f"--steps must exceed --warmup + 1 ({args.warmup + 1})")
    with tempfile.TemporaryDirectory(prefix="bench-trunk-") as tmp:
        tmp = Path(tmp)
        roots = {"baseline": baseline_copy(args.baseline, tmp), "current": REPO}
        results = {name: [] for name in roots}
        for r in range(args.rounds):
            for name, root in roots.items():
                results[name].append(side(name, root, args, tmp / "runs", r))
                last = results[name][-1]
                print(f"round {r + 1} {name:8s}: {np.median(last['step_s'][args.warmup:]):.3f} s per step "
                      f"(batch {last['batch_size']}), start-up {last['startup_s']:.1f} s", flush=True)
    rate = {}
    for name, rs in results.items():
        steps = np.concatenate([r["step_s"][args.warmup:] for r in rs])
        rate[name] = rs[0]["batch_size"] / np.median(steps)
        print(f"{name:8s}: {np.median(steps):.3f} s per step, batch {rs[0]['batch_size']}, {rate[name]:.1f} images/s; "
              f"start-up {rs[0]['startup_s']:.1f} s first, {np.median([r['startup_s'] for r in rs[1:]] or [0]):.1f} s "
              f"after ({rs[0]['threads']} threads)")
    ratio = rate["current"] / rate["baseline"]
    print(f"ratio     {ratio:.2f}x the images per second of {args.baseline}'s trunk recipe (target >= {TARGET})")
    step_s = float(np.median(np.concatenate([r["step_s"][args.warmup:] for r in results["current"]])))
    analyse_current(args, step_s)


if __name__ == "__main__":
    main()
