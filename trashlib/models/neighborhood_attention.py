"""2-D (dilated) neighbourhood attention in plain PyTorch, with natten's semantics.

Each query attends to a kernel_size x kernel_size window of keys. With dilation d the window lives on
the sub-grid of positions congruent to the query modulo d (per axis), and it is CLAMPED at the
borders: near an edge the window shifts inward instead of being padded, so every query always sees
exactly kernel_size**2 real keys. The relative position bias table has shape (heads, 2k-1, 2k-1) and
is indexed by the key-minus-query offset measured in sub-grid steps, plus k-1 - exactly natten's
`natten2dqkrpb` / `natten2dav` (natten <= 0.17), which transformers' DiNAT was written against.

With autograd, each query's key/value window is gathered through precomputed index tensors and
multiplied in one batched matmul; without it (inference) a loop over the k*k window slots of whole-grid
index_selects is ~3x faster on CPU and needs no k*k-fold copy. Never a Python loop over pixels.
natten's CUDA kernels are used instead when natten's old functional API imports and the tensors are
on a GPU; natten is never required.
"""
from __future__ import annotations

from contextlib import contextmanager
from functools import lru_cache

import torch

_ALWAYS_GATHER = False


@contextmanager
def matmul_path():
    """Use the gather + batched-matmul path even without autograd (so FLOP counters see the matmuls)."""
    global _ALWAYS_GATHER
    previous, _ALWAYS_GATHER = _ALWAYS_GATHER, True
    try:
        yield
    finally:
        _ALWAYS_GATHER = previous


def _natten_functions():
    """natten's (<= 0.17) functional kernels, or None when natten or that API is missing."""
    try:
        from natten.functional import natten2dav, natten2dqkrpb
    except Exception:  # ImportError, or a natten build that fails on this torch
        return None
    return natten2dqkrpb, natten2dav


_NATTEN = None


def _use_natten(tensor: torch.Tensor):
    global _NATTEN
    if not tensor.is_cuda:
        return None
    if _NATTEN is None:
        _NATTEN = _natten_functions() or False
    return _NATTEN or None


@lru_cache(maxsize=64)
def _axis_indices(length: int, kernel_size: int, dilation: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Key positions (L, k) and bias indices (L, k) of every query position along one axis."""
    if kernel_size % 2 != 1 or kernel_size < 1:
        raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
    if dilation < 1:
        raise ValueError(f"dilation must be >= 1, got {dilation}")
    if length < kernel_size * dilation:
        # natten has the same limit; transformers' DinatLayer pads its input up to k*d beforehand
        raise ValueError(f"axis length {length} < kernel_size*dilation = {kernel_size * dilation}")
    pos = torch.arange(length)
    residue, sub = pos % dilation, pos // dilation  # sub-grid of the query and its index in it
    sub_len = (length - residue + dilation - 1) // dilation  # size of that sub-grid
    start = (sub - kernel_size // 2).clamp(min=0)
    start = torch.minimum(start, sub_len - kernel_size)  # clamp: the window shifts inward at the end
    steps = start[:, None] + torch.arange(kernel_size)[None, :]  # (L, k) sub-grid indices of the keys
    keys = residue[:, None] + dilation * steps
    bias = steps - sub[:, None] + kernel_size - 1  # offset in sub-grid steps, shifted into 0..2k-2
    return keys, bias


@lru_cache(maxsize=64)
def neighborhood_indices(height: int, width: int, kernel_size: int, dilation: int,
                         device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Flat key index and flat bias index of every (query, window slot) pair (cached per shape/device).

    Shape:
        returns: key_index (H*W*k*k,) into the flattened H*W grid; bias_index (H*W*k*k,) into the
        flattened (2k-1)*(2k-1) bias table; slots run row-major over the k x k window.
    """
    k = kernel_size
    keys_h, bias_h = _axis_indices(height, k, dilation)
    keys_w, bias_w = _axis_indices(width, k, dilation)
    key_index = keys_h[:, None, :, None] * width + keys_w[None, :, None, :]  # (H, W, k, k)
    bias_index = bias_h[:, None, :, None] * (2 * k - 1) + bias_w[None, :, None, :]
    return key_index.reshape(-1).to(device), bias_index.reshape(-1).to(device)


def _use_gather(*tensors: torch.Tensor) -> bool:
    return _ALWAYS_GATHER or (torch.is_grad_enabled() and any(t.requires_grad for t in tensors))


@lru_cache(maxsize=64)
def _axis_pair(height: int, width: int, kernel_size: int, dilation: int, device) -> tuple[tuple, tuple]:
    """Per window row a, the key row of every query row (and the same for columns), on `device`."""
    keys_h, _ = _axis_indices(height, kernel_size, dilation)
    keys_w, _ = _axis_indices(width, kernel_size, dilation)
    return (tuple(keys_h.t().contiguous().to(device)), tuple(keys_w.t().contiguous().to(device)))


def _gather_windows(x: torch.Tensor, key_index: torch.Tensor, kk: int) -> torch.Tensor:
    """(B, h, H, W, D) -> (B, h, H, W, k*k, D): each query's key (or value) window."""
    b, h, height, width, d = x.shape
    flat = x.reshape(b, h, height * width, d)
    return flat[:, :, key_index].view(b, h, height, width, kk, d)


def na2d_qk(query: torch.Tensor, key: torch.Tensor, rpb: torch.Tensor | None, *,
            kernel_size: int, dilation: int = 1) -> torch.Tensor:
    """Attention scores of every query against its neighbourhood, plus the relative position bias.

    Shape:
        query, key: (B, heads, H, W, D) (query already scaled)
        rpb: (heads, 2k-1, 2k-1) or None
        returns: (B, heads, H, W, k*k) scores, window slots row-major
    """
    natten = _use_natten(query)
    if natten is not None:
        return natten[0](query, key, rpb, kernel_size, dilation)
    height, width = query.shape[2:4]
    kk = kernel_size * kernel_size
    key_index, bias_index = neighborhood_indices(height, width, kernel_size, dilation, query.device)
    if _use_gather(query, key):
        windows = _gather_windows(key, key_index, kk)  # (B, h, H, W, kk, D)
        scores = (query.unsqueeze(-2) @ windows.transpose(-1, -2)).squeeze(-2)
    else:
        rows_index, cols_index = _axis_pair(height, width, kernel_size, dilation, query.device)
        scores = query.new_empty(*query.shape[:-1], kk)
        for a, rows in enumerate(rows_index):
            key_rows = key.index_select(2, rows)
            for c, cols in enumerate(cols_index):
                scores[..., a * kernel_size + c] = (query * key_rows.index_select(3, cols)).sum(-1)
    if rpb is not None:
        heads = rpb.shape[0]
        scores = scores + rpb.reshape(heads, -1)[:, bias_index].view(heads, height, width, kk)
    return scores


def na2d_av(attn: torch.Tensor, value: torch.Tensor, *, kernel_size: int, dilation: int = 1) -> torch.Tensor:
    """Attention-weighted sum of every query's value window.

    Shape:
        attn: (B, heads, H, W, k*k) probabilities from `na2d_qk` + softmax
        value: (B, heads, H, W, D)
        returns: (B, heads, H, W, D)
    """
    natten = _use_natten(value)
    if natten is not None:
        return natten[1](attn, value, kernel_size, dilation)
    height, width = value.shape[2:4]
    if _use_gather(attn, value):
        key_index, _ = neighborhood_indices(height, width, kernel_size, dilation, value.device)
        windows = _gather_windows(value, key_index, kernel_size * kernel_size)
        return (attn.unsqueeze(-2) @ windows).squeeze(-2)
    rows_index, cols_index = _axis_pair(height, width, kernel_size, dilation, value.device)
    out = torch.zeros_like(value)
    for a, rows in enumerate(rows_index):
        value_rows = value.index_select(2, rows)
        for c, cols in enumerate(cols_index):
            out += attn[..., a * kernel_size + c, None] * value_rows.index_select(3, cols)
    return out


def neighborhood_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                           rpb: torch.Tensor | None = None, *, kernel_size: int, dilation: int = 1) -> torch.Tensor:
    """softmax(q.k + rpb) v over each query's (dilated, border-clamped) neighbourhood; q is scaled here.

    Shape:
        query, key, value: (B, heads, H, W, D)
        returns: (B, heads, H, W, D)
    """
    query = query * query.shape[-1] ** -0.5
    attn = na2d_qk(query, key, rpb, kernel_size=kernel_size, dilation=dilation).softmax(-1)
    return na2d_av(attn, value, kernel_size=kernel_size, dilation=dilation)
