"""Per-member gradient clipping (mfsweep/tasks/optim.py) against `torch.nn.utils.clip_grad_norm_` on each member
alone."""
from __future__ import annotations

import torch

from mfsweep.tasks.optim import clip_grad_norm_per_member


def _stacked_grads(norms: list[float]) -> list[torch.nn.Parameter]:
    """Two stacked parameters (E, 3, 2) and (E, 1, 4) whose member-e gradient has total norm norms[e]."""
    g = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.zeros(len(norms), 3, 2)), torch.nn.Parameter(torch.zeros(len(norms), 1, 4))]
    raw = [torch.randn(p.shape, generator=g) for p in params]
    total = sum(r.reshape(len(norms), -1).pow(2).sum(1) for r in raw).sqrt()
    for p, r in zip(params, raw):
        p.grad = r * (torch.tensor(norms) / total).view(-1, 1, 1)
    return params


def test_clip_grad_norm_per_member_equals_torch_clip_on_each_member_alone():
    params = _stacked_grads([3.0, 0.5])
    expected, expected_norms = [], []
    for e in range(2):  # torch's own clipping, member by member, on copies
        alone = [torch.nn.Parameter(p.detach()[e].clone()) for p in params]
        for a, p in zip(alone, params):
            a.grad = p.grad[e].clone()
        expected_norms.append(torch.nn.utils.clip_grad_norm_(alone, max_norm=1.0))
        expected.append([a.grad for a in alone])
    norms = clip_grad_norm_per_member(params, torch.tensor([1.0, 1.0]))
    torch.testing.assert_close(norms, torch.stack(expected_norms))
    torch.testing.assert_close(norms, torch.tensor([3.0, 0.5]))
    for e in range(2):
        for p, want in zip(params, expected[e]):
            torch.testing.assert_close(p.grad[e], want)
    # by hand: member 0 now has norm 1 (clipped), member 1 is untouched at 0.5
    after = sum(p.grad.reshape(2, -1).pow(2).sum(1) for p in params).sqrt()
    torch.testing.assert_close(after, torch.tensor([1.0, 0.5]), rtol=1e-5, atol=1e-6)


def test_clip_grad_norm_per_member_max_norms_differ_and_zero_turns_clipping_off():
    params = _stacked_grads([3.0, 3.0])
    before = [p.grad.clone() for p in params]
    clip_grad_norm_per_member(params, torch.tensor([0.0, 2.0]))
    for p, b in zip(params, before):
        torch.testing.assert_close(p.grad[0], b[0])  # max norm 0: member 0 untouched
        torch.testing.assert_close(p.grad[1], b[1] * (2.0 / (3.0 + 1e-6)))  # scaled to norm 2


def test_clip_grad_norm_unstacked_is_torch_clip():
    params = _stacked_grads([3.0])
    ref = [torch.nn.Parameter(p.detach().clone()) for p in params]
    for a, p in zip(ref, params):
        a.grad = p.grad.clone()
    want = torch.nn.utils.clip_grad_norm_(ref, 1.0)
    got = clip_grad_norm_per_member(params, torch.tensor([1.0]))  # one member: any parameter layout
    torch.testing.assert_close(got, want.reshape(1))
    for p, a in zip(params, ref):
        torch.testing.assert_close(p.grad, a.grad)
