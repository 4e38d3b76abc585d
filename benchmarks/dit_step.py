"""One DiT-B/4 MeanFlow training step on ImageNet-256-shaped latents (32x32x4), global batch 256: mfsweep's
step against the same step written the plain way (issue 5 benchmark).

    python benchmarks/dit_step.py                  # on a GPU: DiT-B/4, batch 256
    python benchmarks/dit_step.py --bf16           # also mfsweep's step under bf16-mixed autocast
    python benchmarks/dit_step.py --tiny           # smoke check anywhere (CPU): a tiny DiT, batch 8

A step is draw + loss + backward + AdamW + both EMA updates of `LatentDiTTask` (guidance omega 1 / mix 0.5,
label dropout 0.1, logit-normal(-0.4, 1) times with 25% r != t), at two recipes:
- `alpha=0`: vanilla MF-B/4 (conditional tangent, adaptive weight p = 1);
- `corner`: alpha = 1 with the EMA tangent and the anchor (weight 0.1), adaptive weight off (docs/method.md 3).
Implementations:
- `mfsweep`: the task as trained: forward-mode AD only on the r < t rows, math attention there, fused SDPA
  for every plain forward (the r = t rows, guidance, EMA proxy, anchor); fp32, or bf16 forwards with `--bf16`.
- `plain`: the same loss with `torch.func.jvp` over the whole model on the whole batch, default attention
  (timm's fused SDPA), no compile. Where forward-mode AD is not implemented for the fused kernel the row says
  so, and `plain/math` re-runs it with PyTorch's math SDPA backend.
Reported: median images/s over `--repeats` windows of `--steps` steps, and peak CUDA memory.
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from typing import Any, Callable

import torch

from mfsweep.method.proxy import ConditionalProxy, EMAProxy
from mfsweep.method.schedule import ConstantAlpha
from mfsweep.config import CONF_DIR
from mfsweep.config.sections import (DiagnosticsConfig, FIDConfig, GradVarConfig, GuidanceConfig, LossConfig,
                                     OptimConfig)
from mfsweep.tasks.latent import LatentDiTTask

B4 = dict(patch_size=4, hidden_size=768, depth=12, num_heads=12, mlp_ratio=4.0)
TINY = dict(patch_size=4, hidden_size=64, depth=2, num_heads=2, mlp_ratio=4.0)

def _dit_recipe(*overrides: str) -> Any:
    """conf/'s DiT recipe (trainer=dit) with `overrides`."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=["trainer=dit", "grad_var.every=0", "diagnostics.every=0", *overrides])


RECIPES = {
    "alpha=0": dict(alpha=0.0, proxy=ConditionalProxy, cfg=_dit_recipe("loss.adaptive_p=1.0")),
    "corner": dict(alpha=1.0, proxy=EMAProxy, cfg=_dit_recipe("loss.adaptive_p=0.0", "loss.anchor_weight=0.1")),
}


class RandomLatents:
    """A bank of random latents with labels standing in for the encoded ImageNet (the step's cost does not
    depend on the values)."""

    description = "random latents"

    def __init__(self, n: int, shape: tuple[int, int, int], num_classes: int):
        g = torch.Generator().manual_seed(0)
        self.x, self.y = torch.randn(n, *shape, generator=g), torch.randint(num_classes, (n,), generator=g)
        self.shape, self.num_classes = shape, num_classes

    def __len__(self) -> int:
        return len(self.y)

    def fetch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[index], self.y[index]


class PlainStep(LatentDiTTask):
    """The textbook step: one `torch.func.jvp` of the model's forward over the whole batch."""

    def jvp_fn(self, batch):
        return lambda z, r, t, dz, dr, dt: torch.func.jvp(lambda *a: self.model(*a, batch.y), (z, r, t), (dz, dr, dt))


def make_step(impl: str, recipe: str, model_cfg: dict, batch: int, device: torch.device,
              bf16: bool) -> Callable[[], None]:
    data = RandomLatents(4 * batch, (4, 32, 32), 1000)
    r = RECIPES[recipe]
    cls = PlainStep if impl.startswith("plain") else LatentDiTTask
    task = cls(data, ConstantAlpha(r["alpha"]), 0, model_cfg=model_cfg, num_classes=1000, batch_size=batch,
               time_cfg=dict(r["cfg"].time), guidance=GuidanceConfig.from_node(r["cfg"].guidance),
               fid=FIDConfig.from_node(r["cfg"].metrics.fid | {"features": "classifier"}),
               proxy=r["proxy"](), loss=LossConfig.from_node(r["cfg"].loss), optim=OptimConfig.from_node(r["cfg"].trainer),
               grad_var=GradVarConfig.from_node(r["cfg"].grad_var),
               diagnostics=DiagnosticsConfig.from_node(r["cfg"].diagnostics)).to(device)
    opt = task.configure_optimizers()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    def attention() -> contextlib.AbstractContextManager:
        return sdpa_kernel(SDPBackend.MATH) if impl == "plain/math" else contextlib.nullcontext()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16), attention():
            losses = task.losses(task.draw_batch())
        losses["total"].sum().backward()
        opt.step()
        task.update_emas()

    return step


def measure(step: Callable[[], None], device: torch.device, steps: int, repeats: int, warmup: int) -> dict[str, Any]:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        step()
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        sync()
        times.append((time.perf_counter() - start) / steps)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
    return {"s_per_step": statistics.median(times), "peak_gib": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a tiny DiT at batch 8 (CPU smoke check)")
    parser.add_argument("--batch", type=int, default=None, help="global batch (default 256; 8 with --tiny)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--bf16", action="store_true", help="also time mfsweep's step with bf16-mixed forwards")
    parser.add_argument("--steps", type=int, default=10, help="steps per timing window")
    parser.add_argument("--repeats", type=int, default=5, help="timing windows (the median is reported)")
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    device = torch.device(args.device)
    model_cfg, batch = (TINY, args.batch or 8) if args.tiny else (B4, args.batch or 256)
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}), "
          f"torch {torch.__version__}, {'tiny DiT' if args.tiny else 'DiT-B/4'}, batch {batch}, 32x32x4 latents")
    print("| recipe | step | images/s | s/step | peak GiB | vs plain |")
    print("| --- | --- | --- | --- | --- | --- |")
    for recipe in RECIPES:
        rows: dict[str, dict[str, Any]] = {}
        for impl in ["plain", "mfsweep"] + (["mfsweep+bf16"] if args.bf16 else []):
            try:
                rows[impl] = run(impl, recipe, model_cfg, batch, device, args)
            except (RuntimeError, NotImplementedError) as err:  # forward AD through a fused attention kernel
                print(f"| {recipe} | {impl} | failed: {str(err).splitlines()[0][:100]} | | | |")
                if impl == "plain":
                    rows["plain/math"] = run("plain/math", recipe, model_cfg, batch, device, args)
        base = rows.get("plain") or rows.get("plain/math")
        for impl, m in rows.items():
            peak = f"{m['peak_gib']:.1f}" if m["peak_gib"] is not None else "n/a"
            print(f"| {recipe} | {impl} | {batch / m['s_per_step']:.1f} | {m['s_per_step']:.4f} | {peak} | "
                  f"{base['s_per_step'] / m['s_per_step']:.2f}x |")


def run(impl: str, recipe: str, model_cfg: dict, batch: int, device: torch.device, args: argparse.Namespace) -> dict:
    try:
        return measure(make_step(impl, recipe, model_cfg, batch, device, bf16=impl.endswith("bf16")), device,
                       args.steps, args.repeats, args.warmup)
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
