"""FID's jackknife standard error (mfsweep/metrics/fid.py, docs/method.md 5) against the SD over independent
draws of the generated images, and what the K extra Frechet distances cost.

    OMP_NUM_THREADS=1 python benchmarks/fid_jackknife.py              # both parts
    OMP_NUM_THREADS=1 python benchmarks/fid_jackknife.py --no-cost    # the Monte Carlo part only

Monte Carlo: `--draws` independent draws of N = 300 generated images of 10 classes (class i mod 10, as the
latent task labels them) whose features are Gaussian (F = 6; the feature network maps pixels Phi(z) to z),
scored against one fixed 4,000-image reference, in three regimes: the generated law equal to the reference's
(FID at its floor, the bias of N images), classes whose means differ (by 0.5 SD per feature), and the same
shifted by 0.3 SD. Two "alphas" share each draw's noise (the second scales it by 1.1 and shifts it by 0.05). Per
regime: the rms over draws of the jackknife SE (10 blocks of whole rounds of the classes) divided by the SD over
the draws, for FID and for the paired difference, and for FID with blocks of one class each (rounds of 1).

Cost: one 2048-d Frechet distance from float64 moments, mfsweep's (one symmetric eigendecomposition, the
reference's root once) against torchmetrics' (general eigenvalues of S1 S2), on this machine's CPU threads.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn


class GaussianFeatures(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.special.ndtri(x.double().clamp(1e-7, 1 - 1e-7)).flatten(1)


def _pixels(z: torch.Tensor) -> torch.Tensor:
    return torch.special.ndtr(z).float().reshape(-1, 3, 1, 2)


def monte_carlo(draws: int) -> None:
    from mfsweep.metrics.fid import FID
    from mfsweep.report.evaluation import paired_eval_se

    classes, n, k = 10, 300, 10
    print(f"{draws} draws of {n} images, {classes} classes, {k} blocks; rms jackknife SE / SD over draws "
          "(in brackets: the ratio's Monte Carlo SE)")
    for name, spread, shift in (("generated law = reference's", 0.0, 0.0), ("class means differ", 0.5, 0.0),
                                ("class means differ, shifted", 0.5, 0.3)):
        g = torch.Generator().manual_seed(0)
        means = spread * torch.randn(classes, 6, generator=g, dtype=torch.float64)[torch.arange(n) % classes] + shift
        fid = FID(GaussianFeatures(), batch_size=n)
        fid.set_reference(_pixels(torch.randn(4000, 6, generator=g, dtype=torch.float64)))
        rows = []
        for _ in range(draws):
            z = torch.randn(n, 6, generator=g, dtype=torch.float64)
            a = fid.jackknife(_pixels(z + means), k, classes)
            b = fid.jackknife(_pixels(1.1 * z + means + 0.05), k, classes)
            by_class = fid.jackknife(_pixels(z + means), k, 1)
            pair = ({"eval": {"splits": {"fid": list(a.pseudo_values)}}},
                    {"eval": {"splits": {"fid": list(b.pseudo_values)}}})
            rows.append((a.fid, b.fid, a.se, paired_eval_se([pair], "fid"), by_class.se))
        fa, fb, se, se_diff, se_class = np.array(rows).T
        parts = [f"mean FID {fa.mean():.3f}"]
        for label, values, ses in (("FID", fa, se), ("paired difference", fa - fb, se_diff),
                                   ("FID, blocks of one class", fa, se_class)):
            ratio, err = _ratio(values, ses)
            parts.append(f"{label} {ratio:.3f} ({err:.3f})")
        print(f"  {name}: " + "; ".join(parts))


def _ratio(values: np.ndarray, ses: np.ndarray) -> tuple[float, float]:
    """rms(ses) / SD(values) and its Monte Carlo SE (delta method: the SD's relative SE sqrt((kurtosis - 1) / 4R),
    the mean square's SD(se^2) / sqrt(R), half of it for the root)."""
    r = len(values)
    v = values - values.mean()
    rel_sd = np.sqrt(((v**4).mean() / (v**2).mean() ** 2 - 1) / (4 * r))
    rel_rms = 0.5 * (ses**2).std() / (ses**2).mean() / np.sqrt(r)
    ratio = np.sqrt((ses**2).mean()) / values.std(ddof=1)
    return ratio, ratio * np.hypot(rel_sd, rel_rms)


def cost() -> None:
    from torchmetrics.image.fid import _compute_fid

    from mfsweep.metrics.fid import frechet_distance, psd_sqrt

    g = torch.Generator().manual_seed(0)
    f = 2048

    def moments() -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(6000, f, generator=g, dtype=torch.float64) @ (torch.randn(f, f, generator=g, dtype=torch.float64) / f**0.5)
        return x.mean(0), torch.cov(x.T)

    (mu1, s1), (mu2, s2) = moments(), moments()
    t = time.perf_counter()
    root = psd_sqrt(s1)
    t_root = time.perf_counter() - t
    times = []
    for _ in range(3):
        t = time.perf_counter()
        ours = frechet_distance(mu1, s1, mu2, s2, sqrt_sigma1=root)
        times.append(time.perf_counter() - t)
    t = time.perf_counter()
    theirs = float(_compute_fid(mu1, s1, mu2, s2))
    t_theirs = time.perf_counter() - t
    print(f"2048-d Frechet on {torch.get_num_threads()} CPU threads: the reference's root {t_root:.1f} s once, then "
          f"{min(times):.1f} s (best of 3) each; torchmetrics {t_theirs:.1f} s; relative difference "
          f"{abs(ours - theirs) / theirs:.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--no-cost", action="store_true", help="skip the 2048-d timing")
    args = parser.parse_args()
    monte_carlo(args.draws)
    if not args.no_cost:
        cost()


if __name__ == "__main__":
    main()
