"""Step cost: one MeanFlow training step vs one flow-matching step on the same MLP (issue 2 benchmark).

    python benchmarks/step_cost.py [--threads 2] [--repeats 7]

Both steps are forward + loss + backward + AdamW on the stacked MLP with one member, the model `mfsweep-train`
uses. The MeanFlow step is the library's `meanflow_loss` with the MLP's hand-written JVP; "naive" is the same loss
with `torch.func.jvp` through the model (the straightforward way). Reported: median seconds per step over
`--repeats` timing windows, and the ratios to the flow-matching step.
"""
from __future__ import annotations

import argparse
import functools
import statistics
import time

import torch

from mfsweep.method.jvp import functional_jvp
from mfsweep.method.loss import meanflow_loss, per_sample
from mfsweep.models.mlp import EnsembleMLP


def make_step(kind: str, width: int, batch: int):
    g = torch.Generator().manual_seed(0)
    model = EnsembleMLP(1, 2, width)
    model.init_member(0, g)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x, e = torch.randn(1, batch, 2, generator=g), torch.randn(1, batch, 2, generator=g)
    t = torch.rand(1, batch, generator=g)
    r = t * torch.rand(1, batch, generator=g)
    z, v = (1 - t[..., None]) * x + t[..., None] * e, e - x
    jvp = {"meanflow": model.jvp, "naive": functools.partial(functional_jvp, model)}.get(kind)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        if kind == "flow_matching":
            loss = per_sample((model(z, t, t) - v) ** 2, 1).mean()
        else:
            loss = meanflow_loss(jvp, z, r, t, v, v).weighted().sum()
        loss.backward()
        opt.step()

    return step


def seconds_per_step(step, n: int, repeats: int) -> float:
    for _ in range(20):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(n):
            step()
        times.append((time.perf_counter() - start) / n)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=100, help="steps per timing window")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, median of {args.repeats} windows x {args.steps} steps")
    print("| width | batch | flow matching (ms) | MeanFlow (ms) | MeanFlow / FM | naive torch.func.jvp / FM |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for width in (128, 256):
        for batch in (256, 1024):
            fm, mf, naive = (seconds_per_step(make_step(k, width, batch), args.steps, args.repeats)
                             for k in ("flow_matching", "meanflow", "naive"))
            print(f"| {width} | {batch} | {fm * 1e3:.3f} | {mf * 1e3:.3f} | {mf / fm:.2f}x | {naive / fm:.2f}x |")


if __name__ == "__main__":
    main()
