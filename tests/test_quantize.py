"""VectorQuantizer: nearest-code lookup, straight-through gradient, EMA updates, dead-code restart, stats."""
import math

import pytest
import torch

from zoo.nn.quantize import VectorQuantizer, usage_stats


def _flat(z):  # (B, D, H, W) -> (B*H*W, D)
    return z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_lookup_is_nearest_code_by_brute_force(dtype):
    torch.manual_seed(0)
    vq = VectorQuantizer(64, 8, chunk=100).to(dtype).eval()  # chunk smaller than the 4*6*6*... rows
    vq.codebook.normal_()
    z = torch.randn(7, 8, 6, 5, dtype=dtype)
    idx = vq.indices(z)                                      # (7, 6, 5)
    assert idx.shape == (7, 6, 5)
    d = torch.cdist(_flat(z).double(), vq.codebook.double())  # (N, K) exact distances
    brute = d.argmin(1)
    chosen = d.gather(1, idx.flatten().unsqueeze(1)).squeeze(1)
    # the chosen code is at the minimum distance (float32: up to rounding of the expansion)
    assert torch.all(chosen <= d.min(1).values + (1e-9 if dtype == torch.float64 else 1e-4))
    if dtype == torch.float64:
        assert torch.equal(idx.flatten(), brute)
    else:
        assert (idx.flatten() == brute).float().mean() > 0.99
    # forward returns the same indices and the looked-up codes
    z_q, idx2, _ = vq(z)
    assert torch.equal(idx2, idx)
    assert torch.allclose(z_q, vq.lookup(idx), atol=1e-6)  # z + (e - z): rounding only
    assert torch.allclose(vq.lookup(idx).permute(0, 2, 3, 1).reshape(-1, 8), vq.codebook[idx.flatten()])


def test_straight_through_gradient_reaches_encoder_output():
    torch.manual_seed(0)
    vq = VectorQuantizer(16, 4, beta=0.0).eval()
    z = torch.randn(2, 4, 3, 3, requires_grad=True)
    w = torch.randn(2, 4, 3, 3)
    z_q, _, _ = vq(z)
    (z_q * w).sum().backward()
    assert torch.equal(z.grad, w)  # d(z_q)/dz is the identity
    # the commitment loss adds beta * d/dz mean((z - e)^2)
    vq2 = VectorQuantizer(16, 4, beta=0.5).eval()
    z2 = z.detach().clone().requires_grad_(True)
    _, idx, st = vq2(z2)
    st["commit_loss"].backward()
    e = vq2.lookup(idx)
    assert torch.allclose(z2.grad, 0.5 * 2 * (z2.detach() - e) / z2.numel(), atol=1e-7)


def test_ema_update_moves_codes_toward_assigned_outputs():
    torch.manual_seed(0)
    vq = VectorQuantizer(4, 2, decay=0.9, dead_after=0)
    with torch.no_grad():
        vq.codebook.copy_(torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]]))
        vq.ema_sum.copy_(vq.codebook)
    # all vectors near code 0 and code 3, centred at (1, 1) and (9, 9)
    pts = torch.cat([torch.full((50, 2), 1.0), torch.full((50, 2), 9.0)])      # (100, 2)
    z = pts.t().reshape(1, 2, 10, 10)
    before = vq.codebook.clone()
    vq.eval()
    vq(z)
    assert torch.equal(vq.codebook, before), "eval-mode forward changed the codebook"
    vq.train()
    for _ in range(20):
        _, idx, _ = vq(z)
    assert torch.allclose(vq.codebook[0], torch.tensor([1.0, 1.0]), atol=0.02)
    assert torch.allclose(vq.codebook[3], torch.tensor([9.0, 9.0]), atol=0.02)
    # unassigned codes keep (almost) their place: only the smoothing of the counts touches them
    assert torch.allclose(vq.codebook[1:3], before[1:3], rtol=1e-3)
    # one step from the initial state moves exactly (1 - decay) of the way in sum and count
    vq1 = VectorQuantizer(4, 2, decay=0.9, eps=0.0, dead_after=0)
    with torch.no_grad():
        vq1.codebook.copy_(before)
        vq1.ema_sum.copy_(before)
    vq1(z)
    n_code = 50.0
    expect = (0.9 * before[0] + 0.1 * n_code * torch.tensor([1.0, 1.0])) / (0.9 + 0.1 * n_code)
    total = 4 * 0.9 + 0.1 * 100  # counts sum: smoothing with eps=0 is the identity
    assert math.isclose(float(vq1.ema_count.sum()), total, rel_tol=1e-6)
    assert torch.allclose(vq1.codebook[0], expect, atol=1e-5)


def test_dead_codes_restart_onto_encoder_outputs():
    torch.manual_seed(0)
    n_steps = 4
    vq = VectorQuantizer(8, 3, dead_after=n_steps, decay=0.99)
    with torch.no_grad():  # codes 0-3 near the data, codes 4-7 far away: never chosen
        vq.codebook.copy_(torch.cat([torch.randn(4, 3) * 0.1, torch.full((4, 3), 100.0)]))
        vq.ema_sum.copy_(vq.codebook)
    z = torch.randn(2, 3, 4, 4)                               # 32 encoder vectors
    flat = _flat(z)
    for step in range(n_steps):
        _, idx, _ = vq(z)
        assert not (idx >= 4).any()
        if step < n_steps - 1:
            assert torch.allclose(vq.codebook[4:], torch.full((4, 3), 100.0), rtol=1e-3), "restarted too early"
    # after n_steps unused forwards the far codes were re-seeded onto encoder vectors
    moved = vq.codebook[4:]
    dist = (moved[:, None] - flat[None]).norm(dim=-1)          # (4, 32), exact (no GEMM expansion)
    assert torch.all(dist.min(1).values < 1e-6), dist.min(1).values
    assert len(set(dist.argmin(1).tolist())) == 4, "restarts should pick distinct vectors"
    assert torch.equal(vq.unused_steps[4:], torch.zeros(4, dtype=torch.long))
    _, idx, stats = vq(z)
    used = set(idx.flatten().tolist())
    assert {4, 5, 6, 7} <= used, used
    assert stats["live_codes"] == len(used)


def test_dead_code_restart_can_be_disabled_and_counts_reset_on_use():
    vq = VectorQuantizer(4, 2, dead_after=0)
    with torch.no_grad():
        vq.codebook.copy_(torch.tensor([[0.0, 0.0], [50.0, 50.0], [60.0, 60.0], [70.0, 70.0]]))
        vq.ema_sum.copy_(vq.codebook)
    z = torch.zeros(1, 2, 2, 2)
    for _ in range(5):
        vq(z)
    assert torch.equal(vq.unused_steps, torch.tensor([0, 5, 5, 5]))
    assert torch.allclose(vq.codebook[1:], torch.tensor([[50.0, 50.0], [60.0, 60.0], [70.0, 70.0]]), rtol=1e-3)


def test_usage_stats_on_hand_made_assignment():
    # 8 assignments: code 0 x4, code 1 x2, code 2 x2, code 3 never
    counts = torch.tensor([4, 2, 2, 0])
    perp, live = usage_stats(counts)
    h = -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))
    assert math.isclose(float(perp), math.exp(h), rel_tol=1e-6)
    assert float(live) == 3
    perp_u, live_u = usage_stats(torch.tensor([3, 3, 3, 3]))
    assert math.isclose(float(perp_u), 4.0, rel_tol=1e-6) and float(live_u) == 4
    # the same figures from a forward pass whose assignment is forced by the codebook
    vq = VectorQuantizer(4, 1, dead_after=0).eval()
    with torch.no_grad():
        vq.codebook.copy_(torch.tensor([[0.0], [1.0], [2.0], [3.0]]))
    z = torch.tensor([0.0, 0.1, -0.1, 0.05, 1.0, 0.9, 2.0, 2.1]).view(1, 1, 2, 4)
    _, idx, st = vq(z)
    assert torch.equal(torch.bincount(idx.flatten(), minlength=4), counts)
    assert math.isclose(float(st["perplexity"]), math.exp(h), rel_tol=1e-6)
    assert float(st["live_codes"]) == 3


def test_codebook_loss_variant_trains_the_codebook_by_gradient():
    torch.manual_seed(0)
    vq = VectorQuantizer(8, 4, ema=False, dead_after=0)
    assert isinstance(vq.codebook, torch.nn.Parameter)
    assert "ema_sum" not in dict(vq.named_buffers())
    z = torch.randn(2, 4, 3, 3)
    before = vq.codebook.detach().clone()
    _, idx, st = vq(z)
    assert torch.equal(vq.codebook.detach(), before), "no EMA step in codebook-loss mode"
    st["codebook_loss"].backward()
    used = torch.unique(idx)
    assert vq.codebook.grad[used].abs().sum() > 0
    unused = torch.tensor([k for k in range(8) if k not in used.tolist()], dtype=torch.long)
    if unused.numel():
        assert torch.all(vq.codebook.grad[unused] == 0)


def test_init_codebook_uses_encoder_outputs():
    torch.manual_seed(0)
    vq = VectorQuantizer(10, 3)
    z = torch.randn(4, 3, 5, 5)
    vq.init_codebook(z)
    d = (vq.codebook[:, None] - _flat(z)[None]).norm(dim=-1)
    assert torch.all(d.min(1).values < 1e-6)
    assert torch.equal(vq.ema_sum, vq.codebook)
