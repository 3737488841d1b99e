"""Decoder-only causal transformer over a 2-D grid of discrete tokens, with a KV-cache sampler.

Shared by the pixel GPT (one token per pixel) and the VQ-VAE prior (one token per latent
position). Tokens are in raster order over ``grid = (rows, cols)``; position t is row
``t // cols``, column ``t % cols``.

Shifting: ``forward(tokens)`` returns logits whose position t predicts ``tokens[:, t]`` from
``tokens[:, :t]``. The network input at position t is the embedding of ``tokens[:, t-1]`` (a
learned start embedding at t = 0) plus the row and
column embeddings of the position being predicted, t.

Conditioning on an embedding (``cond_dim > 0``): ``cond`` (B, cond_dim), e.g. a pooled text
embedding, is projected by ``Linear(cond_dim, d_model)`` and added to the input at every position,
the start (t = 0) included, in the full pass and in the cached sampler alike (which projects it once,
at t = 0, and keeps it in the cache). Added at the start only, as a prefix, it would reach a position
only through attention: never beyond the window under local attention (the pixel GPT's default), and
too faintly to move a barely trained model's samples. The null condition is the zero vector
(``cond=None``). ``sample(..., guidance=w)`` applies classifier-free guidance on the logits,
``null + w * (cond - null)``, with the null and cond rows batched together (one doubled-batch
evaluation per token; w = 0: the null rows only, w = 1: the cond rows only); temperature and
top-k apply after mixing.

Attention is ``torch.nn.functional.scaled_dot_product_attention``: ``is_causal=True`` for the
full pass; the cached sampler appends one key/value per step to preallocated buffers and lets
the single new query attend to every cached position (no mask needed, all are in the past).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import rng


def _register_cpu_sdpa_flops() -> None:
    """Make FlopCounterMode count the CPU flash-attention kernels that SDPA dispatches to here.

    torch 2.x registers FLOP formulas for the CUDA attention kernels only, so on the CPU the
    trainer's FLOP budget would silently skip attention. Reuse torch's own formulas (full
    T x T attention, causal masking not discounted, as for CUDA). Idempotent.
    """
    from torch.utils import flop_counter as fc
    fwd = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    bwd = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward
    if fwd not in fc.flop_registry:
        @fc.register_flop_formula(fwd)
        def _fwd(q, k, v, *args, out_shape=None, **kwargs) -> int:
            return fc.sdpa_flop_count(q, k, v)
    if bwd not in fc.flop_registry:
        @fc.register_flop_formula(bwd)
        def _bwd(grad_out, q, k, v, *args, out_shape=None, **kwargs) -> int:
            return fc.sdpa_backward_flop_count(grad_out, q, k, v)


_register_cpu_sdpa_flops()


class KVCache:
    """Preallocated keys and values for every layer: each (B, n_heads, T, head_dim)."""

    def __init__(self, n_layers: int, batch: int, n_heads: int, length: int, head_dim: int,
                 dtype: torch.dtype, device: torch.device):
        shape = (batch, n_heads, length, head_dim)
        self.k = [torch.empty(shape, dtype=dtype, device=device) for _ in range(n_layers)]
        self.v = [torch.empty(shape, dtype=dtype, device=device) for _ in range(n_layers)]
        self.batch = batch
        self.pos = 0  # number of positions filled
        self.cond: Tensor | None = None  # the projected condition (B, D), set at position 0


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention through scaled_dot_product_attention.

    ``window_rows = 0``: full causal attention. ``window_rows = r > 0``: local attention for
    grid sequences with rows of ``row_len`` tokens; a query in row i attends to the whole of
    rows i-r .. i-1 and to its own row up to itself. It is computed blockwise (one query row
    against its r+1 key rows), so its cost is O(T * (r+1) * row_len) rather than O(T^2).
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0, window_rows: int = 0, row_len: int = 1):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} is not divisible by n_heads {n_heads}")
        if window_rows < 0:
            raise ValueError(f"window_rows must be >= 0, got {window_rows}")
        self.n_heads, self.head_dim = n_heads, d_model // n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.dropout = dropout
        self.window_rows, self.row_len = window_rows, row_len

    def _split(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        b, t, _ = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return q, k, v  # each (B, nh, t, hd)

    def forward(self, x: Tensor) -> Tensor:  # (B, t, D) -> (B, t, D)
        q, k, v = self._split(x)
        p = self.dropout if self.training else 0.0
        if self.window_rows == 0:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=p)  # (B, nh, t, hd)
        else:
            y = self._local(q, k, v, p)
        return self.proj(y.transpose(1, 2).flatten(2))

    def _local(self, q: Tensor, k: Tensor, v: Tensor, dropout_p: float) -> Tensor:
        """Row-blocked local causal attention; q, k, v (B, nh, t, hd) -> (B, nh, t, hd)."""
        b, nh, t, hd = q.shape
        w, r = self.row_len, self.window_rows
        rows = -(-t // w)
        pad = rows * w - t  # a partial last row is padded at the end (never attended: causal)
        q, k, v = (F.pad(z, (0, 0, 0, pad)) for z in (q, k, v))

        def windows(z: Tensor) -> Tensor:  # (B, nh, rows*w, hd) -> (B, nh*rows, (r+1)*w, hd)
            z = F.pad(z, (0, 0, r * w, 0)).view(b, nh, rows + r, w, hd)  # r zero rows in front
            z = torch.cat([z[:, :, i:i + rows] for i in range(r + 1)], dim=3)  # (B, nh, rows, (r+1)*w, hd)
            return z.reshape(b, nh * rows, (r + 1) * w, hd)

        kw, vw = windows(k), windows(v)
        qb = q.reshape(b, nh * rows, w, hd)                            # (B, nh*rows, w, hd)
        mask = self._local_mask(rows, q.device).repeat(nh, 1, 1)       # (nh*rows, w, (r+1)*w)
        y = F.scaled_dot_product_attention(qb, kw, vw, attn_mask=mask, dropout_p=dropout_p)
        return y.view(b, nh, rows * w, hd)[:, :, :t]

    def _local_mask(self, rows: int, device: torch.device) -> Tensor:
        """Bool (rows, w, (r+1)*w): query (row i, col c) may see window slot j (row i-r+j//w, col j%w)."""
        w, r = self.row_len, self.window_rows
        j = torch.arange((r + 1) * w, device=device)
        key_row = torch.arange(rows, device=device)[:, None, None] - r + j // w     # (rows, 1, K)
        col_q = torch.arange(w, device=device)[None, :, None]                       # (1, w, 1)
        return (key_row >= 0) & ((j // w < r) | (j % w <= col_q))

    def step(self, x: Tensor, k_cache: Tensor, v_cache: Tensor, pos: int) -> Tensor:
        """One new position: x (B, 1, D); writes its key/value at ``pos`` and attends over the
        cached positions it may see (0..pos, or its local window)."""
        q, k, v = self._split(x)                               # (B, nh, 1, hd)
        k_cache[:, :, pos:pos + 1] = k
        v_cache[:, :, pos:pos + 1] = v
        lo = max(0, (pos // self.row_len - self.window_rows) * self.row_len) if self.window_rows else 0
        y = F.scaled_dot_product_attention(q, k_cache[:, :, lo:pos + 1], v_cache[:, :, lo:pos + 1])  # (B, nh, 1, hd)
        return self.proj(y.transpose(1, 2).flatten(2))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(LN(x)), then x + MLP(LN(x)) with GELU."""

    def __init__(self, d_model: int, n_heads: int, mlp_ratio: int = 4, dropout: float = 0.0,
                 window_rows: int = 0, row_len: int = 1):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, n_heads, dropout, window_rows, row_len)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, mlp_ratio * d_model), nn.GELU(),
                                 nn.Linear(mlp_ratio * d_model, d_model))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:  # (B, t, D)
        x = x + self.drop(self.attn(self.ln1(x)))
        return x + self.drop(self.mlp(self.ln2(x)))

    def step(self, x: Tensor, k_cache: Tensor, v_cache: Tensor, pos: int) -> Tensor:  # (B, 1, D)
        x = x + self.attn.step(self.ln1(x), k_cache, v_cache, pos)
        return x + self.mlp(self.ln2(x))


class CausalTransformer(nn.Module):
    """Decoder-only, pre-norm, causal self-attention via F.scaled_dot_product_attention, KV cache."""

    def __init__(self, vocab_size: int, grid: tuple[int, int], d_model: int, n_layers: int, n_heads: int,
                 mlp_ratio: int = 4, dropout: float = 0.0, window_rows: int = 0, cond_dim: int = 0):
        """``window_rows = 0``: full causal attention; ``r > 0``: each token attends to the r grid
        rows above it and its own row up to itself (local attention, O(T * r * cols) cost).
        ``cond_dim > 0``: conditioned on an embedding (B, cond_dim) added, projected, to the input
        at every position; ``cond_dim = 0`` builds nothing for it (the other parameters and their
        init are the same either way)."""
        super().__init__()
        if cond_dim < 0:
            raise ValueError(f"cond_dim must be >= 0, got {cond_dim}")
        self.vocab_size = vocab_size
        self.grid = (int(grid[0]), int(grid[1]))
        self.seq_len = self.grid[0] * self.grid[1]
        self.d_model, self.n_layers, self.n_heads = d_model, n_layers, n_heads
        self.tok_emb = nn.Embedding(vocab_size, d_model)
        self.row_emb = nn.Parameter(torch.zeros(self.grid[0], d_model))
        self.col_emb = nn.Parameter(torch.zeros(self.grid[1], d_model))
        self.start = nn.Parameter(torch.zeros(d_model))
        self.drop = nn.Dropout(dropout)
        self.window_rows = window_rows
        self.blocks = nn.ModuleList(Block(d_model, n_heads, mlp_ratio, dropout, window_rows, self.grid[1])
                                    for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)
        self._init_weights()
        self.cond_dim = cond_dim
        self.cond_proj: nn.Linear | None = None
        if cond_dim > 0:  # built after the rest is initialised: the rest draws the same init as without it
            self.cond_proj = nn.Linear(cond_dim, d_model)
            nn.init.normal_(self.cond_proj.weight, std=0.02)
            nn.init.zeros_(self.cond_proj.bias)

    def _init_weights(self) -> None:
        """GPT-2 style: N(0, 0.02) weights, zero biases, residual projections scaled by 1/sqrt(2L)."""
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)
        for p in (self.row_emb, self.col_emb, self.start):
            nn.init.normal_(p, std=0.02)
        for blk in self.blocks:
            nn.init.normal_(blk.attn.proj.weight, std=0.02 / math.sqrt(2 * self.n_layers))
            nn.init.normal_(blk.mlp[2].weight, std=0.02 / math.sqrt(2 * self.n_layers))

    # ---- embeddings ------------------------------------------------------------------------
    def _pos(self, start: int, length: int) -> Tensor:
        """Row + column embeddings of positions start .. start+length-1: (length, D)."""
        t = torch.arange(start, start + length, device=self.row_emb.device)
        return self.row_emb[t // self.grid[1]] + self.col_emb[t % self.grid[1]]

    def _projected_condition(self, batch: int, cond: Tensor | None) -> Tensor | None:
        """The projected condition added at every position, (B, D); the null condition (zeros) when
        cond is None. None for a transformer built with cond_dim=0."""
        if self.cond_proj is None:
            return None
        if cond is None:
            cond = torch.zeros(batch, self.cond_dim, device=self.start.device)  # the null condition
        return self.cond_proj(cond)                                             # (B, D)

    def _check_condition(self, cond: Tensor | None, batch: int) -> None:
        """A ValueError unless ``cond`` is None or float (batch, cond_dim) for a transformer built to take it."""
        if cond is None:
            return
        if self.cond_proj is None:
            raise ValueError("this transformer was built with cond_dim=0: cond is not supported")
        if tuple(cond.shape) != (batch, self.cond_dim) or not cond.is_floating_point():
            raise ValueError(f"cond must be float ({batch}, {self.cond_dim}), got {tuple(cond.shape)}")

    # ---- full (teacher-forced) pass -----------------------------------------------------------
    def forward(self, tokens: Tensor, cond: Tensor | None = None) -> Tensor:
        """tokens (B, L) int64 with L <= T -> logits (B, L, vocab); logits[:, t] predicts tokens[:, t]
        from tokens[:, :t] (the last token only serves as a target). ``cond`` (B, cond_dim) or None
        (the null condition) for a transformer built with ``cond_dim > 0``."""
        b, length = tokens.shape
        if length > self.seq_len:
            raise ValueError(f"sequence of {length} tokens is longer than the grid's {self.seq_len}")
        self._check_condition(cond, b)
        start = self.start.expand(b, 1, -1)                                     # (B, 1, D)
        x = torch.cat([start, self.tok_emb(tokens[:, :-1])], dim=1)             # (B, L, D)
        x = x + self._pos(0, length)
        c = self._projected_condition(b, cond)
        if c is not None:
            x = x + c.unsqueeze(1)                                              # (B, L, D)
        x = self.drop(x)
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.ln_f(x))                                          # (B, L, V)

    # ---- cached incremental pass ---------------------------------------------------------
    def init_cache(self, batch: int) -> KVCache:
        """Empty KV cache for ``batch`` sequences of the full grid length."""
        p = self.head.weight
        return KVCache(self.n_layers, batch, self.n_heads, self.seq_len, self.d_model // self.n_heads,
                       p.dtype, p.device)

    def step(self, cache: KVCache, prev: Tensor | None, cond: Tensor | None = None) -> Tensor:
        """Logits (B, vocab) for position ``cache.pos`` given the previous token ``prev`` (B,)
        (None at position 0, where the start embedding is the input); advances the cache.
        ``cond`` is read at position 0 only: the cache keeps the sequence's condition."""
        t = cache.pos
        if t >= self.seq_len:
            raise ValueError(f"the cache is full ({self.seq_len} positions)")
        if t == 0:
            self._check_condition(cond, cache.batch)
            cache.cond = self._projected_condition(cache.batch, cond)           # (B, D) or None
            x = self.start.expand(cache.batch, -1)                              # (B, D)
        else:
            x = self.tok_emb(prev)                                              # (B, D)
        x = x + self._pos(t, 1)
        if cache.cond is not None:
            x = x + cache.cond
        x = x.unsqueeze(1)                                                      # (B, 1, D)
        for i, blk in enumerate(self.blocks):
            x = blk.step(x, cache.k[i], cache.v[i], t)
        cache.pos = t + 1
        return self.head(self.ln_f(x[:, 0]))                                    # (B, V)

    # ---- sampling --------------------------------------------------------------------------
    @staticmethod
    def _draw(logits: Tensor, gens: list[torch.Generator], temperature: float, top_k: int | None) -> Tensor:
        """One token per row of logits (B, V): temperature, top-k, then an inverse-CDF draw with gens[i]."""
        logits = logits.float() / temperature
        if top_k is not None and top_k < logits.shape[-1]:
            kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]              # (B, 1)
            logits = logits.masked_fill(logits < kth, float("-inf"))
        return rng.categorical(gens, torch.softmax(logits, dim=-1))             # (B,)

    @torch.no_grad()
    def sample(self, gens: list[torch.Generator], *, temperature: float = 1.0, top_k: int | None = None,
               cond: Tensor | None = None, guidance: float = 1.0,
               use_cache: bool = True) -> Tensor:
        """(B, T) int64 tokens in raster order, B = len(gens); token t of sample i is drawn with
        ``zoo.rng.categorical`` from gens[i] only. ``use_cache=False`` is the reference sampler
        that recomputes the whole prefix at every step (O(T) times slower); both give the same
        tokens for the same generators (up to float near-ties).

        ``cond`` (B, cond_dim), or None for the null condition; ``guidance`` w mixes the logits as
        ``null + w * (cond - null)`` (see the module docstring): the null and cond rows run as one
        doubled batch and share the token drawn for their sample. Without ``cond`` it has no effect."""
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be >= 1 or None, got {top_k}")
        if not math.isfinite(guidance):
            raise ValueError(f"guidance must be finite, got {guidance}")
        b = len(gens)
        self._check_condition(cond, b)
        device = self.head.weight.device
        mix = cond is not None and guidance not in (0, 1)
        if cond is not None and guidance == 0:
            cond = None                                                         # w = 0: the null rows only
        elif mix:                                                               # rows: b null, then b cond
            cond = torch.cat([torch.zeros_like(cond), cond])                    # (2B, cond_dim)
        rows = 2 * b if mix else b

        def draw(logits: Tensor) -> Tensor:  # (rows, V) -> (rows,): one token per sample, on its rows
            if not mix:
                return self._draw(logits, gens, temperature, top_k)
            null, c = logits[:b].float(), logits[b:].float()                     # each (B, V)
            return self._draw(null + guidance * (c - null), gens, temperature, top_k).repeat(2)

        tokens = torch.zeros(rows, self.seq_len, dtype=torch.long, device=device)  # (rows, T)
        if use_cache:
            cache = self.init_cache(rows)
            prev = None
            for t in range(self.seq_len):
                prev = tokens[:, t] = draw(self.step(cache, prev, cond))  # step: (rows, V)
        else:
            for t in range(self.seq_len):
                tokens[:, t] = draw(self(tokens[:, :t + 1], cond)[:, t])  # (rows, V); tokens[:, t] unused
        return tokens[:b]
