"""The shared causal transformer: KV-cache sampler vs recompute, causality, local attention, FLOPs."""
import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from zoo import rng
from zoo.nn.transformer import CausalTransformer

GRID = (5, 6)  # T = 30 tokens


def _net(window_rows=0, seed=0, vocab=17, n_layers=2, cond_dim=0):
    torch.manual_seed(seed)
    net = CausalTransformer(vocab, GRID, d_model=16, n_layers=n_layers, n_heads=2,
                            window_rows=window_rows, cond_dim=cond_dim).eval()
    with torch.no_grad():  # larger weights than the init, so logits are far from uniform
        for p in net.parameters():
            p.normal_(0, 0.3)
    return net


@pytest.mark.parametrize("window_rows", [0, 1, 2])
@pytest.mark.parametrize("opts", [{}, {"temperature": 0.7, "top_k": 5}])
def test_cache_and_recompute_samplers_identical(window_rows, opts):
    net = _net(window_rows)
    a = net.sample(rng.generators(3, 0, 6), use_cache=True, **opts)
    b = net.sample(rng.generators(3, 0, 6), use_cache=False, **opts)
    assert a.shape == (6, 30) and a.dtype == torch.int64
    assert torch.equal(a, b)
    assert len(set(a[:, 5].tolist())) > 1, "samples should differ across generators"


@pytest.mark.parametrize("window_rows", [0, 2])
def test_step_logits_match_full_pass(window_rows):
    net = _net(window_rows)
    tokens = torch.randint(0, 17, (3, 30))
    full = net(tokens)                                    # (3, 30, V)
    cache = net.init_cache(3)
    steps, prev = [], None
    for t in range(30):
        steps.append(net.step(cache, prev))
        prev = tokens[:, t]
    torch.testing.assert_close(torch.stack(steps, 1), full, atol=1e-5, rtol=1e-5)
    # a prefix (not a whole number of rows) gives the same logits as the full pass
    torch.testing.assert_close(net(tokens[:, :13]), full[:, :13], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("window_rows", [0, 2])
def test_step_logits_match_full_pass_given_cond(window_rows):
    """The cached sampler reads cond at position 0 and adds it at every step as the full pass does."""
    net = _net(window_rows, cond_dim=5)
    tokens = torch.randint(0, 17, (3, 30))
    cond = torch.randn(3, 5)
    full = net(tokens, cond=cond)                         # (3, 30, V)
    cache = net.init_cache(3)
    steps, prev = [], None
    for t in range(30):
        steps.append(net.step(cache, prev, cond=cond if t == 0 else None))
        prev = tokens[:, t]
    torch.testing.assert_close(torch.stack(steps, 1), full, atol=1e-5, rtol=1e-5)
    # cond=None is the null condition, the zero vector
    torch.testing.assert_close(net(tokens), net(tokens, cond=torch.zeros(3, 5)))
    # the condition reaches every position directly, also past the local-attention window
    diff = (full - net(tokens, cond=torch.randn(3, 5))).abs().amax(-1)  # (3, 30)
    assert (diff > 1e-2).all(), diff


def test_cond_adds_parameters_last():
    """cond_dim > 0 adds only the projection, built and initialised after the rest: the other
    parameters draw the same init as without it (unconditional models are unchanged)."""
    torch.manual_seed(0)
    plain = CausalTransformer(17, GRID, d_model=16, n_layers=2, n_heads=2, window_rows=1)
    torch.manual_seed(0)
    cond = CausalTransformer(17, GRID, d_model=16, n_layers=2, n_heads=2, window_rows=1, cond_dim=5)
    a, b = plain.state_dict(), cond.state_dict()
    assert list(b) == list(a) + ["cond_proj.weight", "cond_proj.bias"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert plain.cond_proj is None


@pytest.mark.parametrize("window_rows", [0, 1])
@pytest.mark.parametrize("guidance", [0.0, 1.0, 2.5])
def test_cache_and_recompute_identical_with_cond_and_guidance(window_rows, guidance):
    net = _net(window_rows, cond_dim=5)
    cond = torch.randn(4, 5)
    opts = {"cond": cond, "guidance": guidance, "temperature": 0.8, "top_k": 6}
    a = net.sample(rng.generators(2, 0, 4), **opts)
    b = net.sample(rng.generators(2, 0, 4), use_cache=False, **opts)
    assert a.shape == (4, 30) and torch.equal(a, b)
    # the shortcuts: w = 0 samples the null condition alone, w = 1 the condition alone
    if guidance == 0:
        assert torch.equal(a, net.sample(rng.generators(2, 0, 4), temperature=0.8, top_k=6))
    if guidance == 1:
        assert torch.equal(a, net.sample(rng.generators(2, 0, 4), cond=cond, temperature=0.8, top_k=6))
    # per-sample: samples 1..2 alone draw the same tokens (the null and cond rows stay paired)
    part = net.sample(rng.generators(2, 1, 2), **{**opts, "cond": cond[1:3]})
    assert torch.equal(a[1:3], part)


def test_guidance_mixes_logits_before_top_k():
    """Greedy (top_k=1) guided tokens are the argmax of null + w * (cond - null) of the full pass."""
    net = _net(window_rows=1, cond_dim=5)
    cond = torch.randn(3, 5)
    w = 3.0
    a = net.sample(rng.generators(0, 0, 3), cond=cond, guidance=w, top_k=1)
    null, c = net(a), net(a, cond=cond)                  # (3, 30, V) each
    assert torch.equal((null + w * (c - null)).argmax(-1), a)
    assert not torch.equal(a, net.sample(rng.generators(0, 0, 3), cond=cond, top_k=1)), "w = 3 should differ from w = 1"


@pytest.mark.parametrize("window_rows", [0, 1])
def test_causality(window_rows):
    net = _net(window_rows)
    tokens = torch.randint(0, 17, (2, 30))
    base = net(tokens)
    for t in (0, 7, 29):
        changed = tokens.clone()
        changed[:, t] = (changed[:, t] + 5) % 17
        out = net(changed)
        assert torch.equal(out[:, :t + 1], base[:, :t + 1]), f"changing token {t} changed logits <= {t}"
        if t + 1 < 30:
            assert not torch.allclose(out[:, t + 1], base[:, t + 1]), "the next position ignores token t"


def test_local_attention_sees_exactly_its_window():
    """window_rows=1 with rows of 6: position t sees row(t)-1 entirely and its own row up to t
    (one layer: with more, the receptive field grows by a window per layer)."""
    net = _net(window_rows=1, n_layers=1)
    tokens = torch.randint(0, 17, (1, 30))
    base = net(tokens)
    t_query = 20                                         # row 3, col 2 -> window starts at 12
    for src in range(t_query):                          # logits at t_query see inputs at <= t_query
        changed = tokens.clone()
        changed[0, src] = (changed[0, src] + 3) % 17     # input at position src + 1 changes
        moved = not torch.allclose(net(changed)[0, t_query], base[0, t_query])
        assert moved == (src + 1 >= 12), (src, moved)
    # the blockwise computation equals full SDPA with the equivalent dense mask
    attn = net.blocks[0].attn
    q, k, v = attn._split(torch.randn(2, 27, 16))       # 27 tokens: a partial last row
    i = torch.arange(27)
    mask = (i[None] <= i[:, None]) & (i[None] // 6 >= i[:, None] // 6 - 1)
    torch.testing.assert_close(attn._local(q, k, v, 0.0), F.scaled_dot_product_attention(q, k, v, attn_mask=mask),
                               atol=1e-5, rtol=1e-5)


def test_sampling_is_per_sample():
    net = _net()
    gens = rng.generators(5, 0, 6)
    whole = net.sample(gens)
    part = net.sample(rng.generators(5, 2, 3))          # samples 2..4 alone
    assert torch.equal(whole[2:5], part)


def test_top_k_one_is_greedy():
    net = _net()
    a = net.sample(rng.generators(0, 0, 2), top_k=1)
    assert torch.equal(a[0], a[1]), "top_k=1 must ignore the random draws"
    logits = net(a)                                      # greedy: every token is the argmax
    assert torch.equal(logits.argmax(-1), a)


def test_bad_arguments():
    net = _net()
    with pytest.raises(ValueError):
        net.sample(rng.generators(0, 0, 1), temperature=0.0)
    with pytest.raises(ValueError):
        net.sample(rng.generators(0, 0, 1), cond=torch.zeros(1, 5))  # cond_dim=0
    with pytest.raises(ValueError):
        _net(cond_dim=5)(torch.zeros(2, 4, dtype=torch.long), cond=torch.zeros(2, 4))  # wrong width
    with pytest.raises(ValueError):
        _net(cond_dim=5).sample(rng.generators(0, 0, 1), cond=torch.zeros(1, 5), guidance=float("nan"))
    with pytest.raises(ValueError):
        net(torch.zeros(1, 31, dtype=torch.long))        # longer than the grid
    with pytest.raises(ValueError):
        CausalTransformer(10, GRID, d_model=15, n_layers=1, n_heads=2)


def test_flop_counter_counts_attention():
    """FlopCounterMode must see the CPU attention kernel: full T x T, 4*T*T*d per layer forward."""
    net = _net()
    tokens = torch.randint(0, 17, (2, 30))
    with FlopCounterMode(display=False) as fc:
        net(tokens)
    counts = {str(k): v for k, v in fc.get_flop_counts()["Global"].items()}
    attn = sum(v for k, v in counts.items() if "attention" in k)
    assert attn == 2 * 2 * (4 * 30 * 30 * 16), counts   # batch 2, 2 layers
