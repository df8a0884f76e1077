"""Pure-PyTorch neighbourhood attention against a per-pixel loop written from natten's definitions."""
from __future__ import annotations

import math

import pytest
import torch

from trashlib.models.neighborhood_attention import (
    na2d_av, na2d_qk, neighborhood_attention, neighborhood_indices)


def _window_start(i: int, length: int, k: int, d: int) -> int:
    """natten's get_window_start (natten <= 0.17), transcribed as-is."""
    ns = k // 2
    if d <= 1:
        return max(i - ns, 0) + (i + ns >= length) * (length - i - ns - 1)
    if i - ns * d < 0:
        return i % d
    if i + ns * d >= length:
        imodd = i % d
        a = (length // d) * d
        b = length - a
        if imodd < b:
            return length - b + imodd - 2 * ns * d
        return a + imodd - k * d
    return i - ns * d


def _pb_start(i: int, length: int, k: int, d: int) -> int:
    """natten's get_pb_start (natten <= 0.17), transcribed as-is."""
    ns = k // 2
    if d <= 1:
        return ns + (i < ns) * (ns - i) + (i + ns >= length) * (length - i - 1 - ns)
    if i - ns * d < 0:
        return k - 1 - i // d
    if i + ns * d >= length:
        return (length - i - 1) // d
    return ns


def naive_na(q, k, v, rpb, kernel, dilation):
    """Loops over every query pixel and window slot; q is used unscaled."""
    b, heads, height, width, _ = q.shape
    out = torch.zeros_like(q)
    for y in range(height):
        sy, py = _window_start(y, height, kernel, dilation), _pb_start(y, height, kernel, dilation)
        for x in range(width):
            sx, px = _window_start(x, width, kernel, dilation), _pb_start(x, width, kernel, dilation)
            scores, values = [], []
            for a in range(kernel):
                for c in range(kernel):
                    ky, kx = sy + a * dilation, sx + c * dilation
                    assert 0 <= ky < height and 0 <= kx < width
                    s = (q[:, :, y, x] * k[:, :, ky, kx]).sum(-1)
                    if rpb is not None:
                        s = s + rpb[:, py + a, px + c]
                    scores.append(s)
                    values.append(v[:, :, ky, kx])
            attn = torch.stack(scores, -1).softmax(-1)  # (B, heads, kk)
            out[:, :, y, x] = (attn.unsqueeze(-1) * torch.stack(values, -2)).sum(-2)
    return out


CASES = [  # (H, W, kernel, dilation): odd sizes, sizes not divisible by d, windows touching both borders
    (7, 9, 3, 1), (9, 7, 5, 1), (11, 13, 3, 2), (13, 10, 3, 3), (7, 7, 7, 1), (15, 11, 5, 2),
    (13, 17, 3, 4), (12, 14, 3, 4),
]


@pytest.mark.parametrize("with_grad", [False, True], ids=["loop-path", "gather-path"])
@pytest.mark.parametrize("height,width,kernel,dilation", CASES)
def test_matches_naive_reference(height, width, kernel, dilation, with_grad):
    # both code paths: the inference loop (no autograd) and the batched gather (autograd)
    g = torch.Generator().manual_seed(height * 100 + width + kernel + dilation)
    q, k, v = (torch.randn(2, 3, height, width, 4, generator=g, dtype=torch.float64) for _ in range(3))
    rpb = torch.randn(3, 2 * kernel - 1, 2 * kernel - 1, generator=g, dtype=torch.float64)
    expected = naive_na(q, k, v, rpb, kernel, dilation)
    if with_grad:
        q.requires_grad_()
    attn = na2d_qk(q, k, rpb, kernel_size=kernel, dilation=dilation).softmax(-1)
    out = na2d_av(attn, v, kernel_size=kernel, dilation=dilation)
    assert out.requires_grad == with_grad
    torch.testing.assert_close(out.detach(), expected, atol=1e-5, rtol=0)


def test_scaled_wrapper_and_no_bias():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 9, 8, 4, generator=g, dtype=torch.float64) for _ in range(3))
    expected = naive_na(q / math.sqrt(4), k, v, None, 3, 2)
    torch.testing.assert_close(neighborhood_attention(q, k, v, kernel_size=3, dilation=2), expected,
                               atol=1e-5, rtol=0)


def test_window_equal_to_grid_is_full_attention():
    # kernel == size and dilation 1: every query sees every key, so NA is plain softmax attention
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 2, 5, 5, 3, generator=g, dtype=torch.float64) for _ in range(3))
    flat = lambda t: t.reshape(1, 2, 25, 3)  # noqa: E731
    full = torch.softmax(flat(q) @ flat(k).transpose(-1, -2), -1) @ flat(v)
    out = na2d_av(na2d_qk(q, k, None, kernel_size=5).softmax(-1), v, kernel_size=5)
    torch.testing.assert_close(out.reshape(1, 2, 25, 3), full)


def test_hand_computed_indices_1d_clamped_and_dilated():
    # 1 x 7 grid, k=3, d=2: sub-grids {0,2,4,6} and {1,3,5}; windows clamp inside their sub-grid
    keys, bias = neighborhood_indices(6, 7, 3, 2)
    keys = keys.view(6, 7, 3, 3)[0, :, 0, :]  # first row of the window, every x
    assert keys.tolist() == [[0, 2, 4], [1, 3, 5], [0, 2, 4], [1, 3, 5], [2, 4, 6], [1, 3, 5], [2, 4, 6]]
    bias_x = (bias.view(6, 7, 3, 3)[0, :, 0, :] % 5).tolist()  # column index into the 5-wide table
    # x=0: offsets 0,1,2 -> 2,3,4 ; x=2 (middle of its sub-grid) -> 1,2,3 ; x=6 (last) -> 0,1,2
    assert bias_x[0] == [2, 3, 4] and bias_x[2] == [1, 2, 3] and bias_x[6] == [0, 1, 2]
    assert bias_x[5] == [0, 1, 2]  # x=5 is the last of {1,3,5}


def test_too_small_grid_is_rejected():
    with pytest.raises(ValueError, match="kernel_size\\*dilation"):
        neighborhood_indices(5, 9, 3, 2)


def test_gradient_flows_to_inputs_and_bias():
    g = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(1, 2, 8, 9, 4, generator=g, requires_grad=True) for _ in range(3))
    rpb = torch.zeros(2, 5, 5, requires_grad=True)
    attn = na2d_qk(q, k, rpb, kernel_size=3, dilation=2).softmax(-1)
    (na2d_av(attn, v, kernel_size=3, dilation=2) ** 2).sum().backward()
    for t in (q, k, v, rpb):
        assert t.grad is not None and t.grad.abs().sum() > 0
    # gradcheck in double precision on a small case
    qd, kd, vd = (t.detach().double().requires_grad_() for t in (q[:, :1, :6, :6], k[:, :1, :6, :6], v[:, :1, :6, :6]))
    rd = torch.randn(1, 5, 5, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda a, b, c, r: na2d_av(na2d_qk(a, b, r, kernel_size=3, dilation=2).softmax(-1), c,
                                                           kernel_size=3, dilation=2), (qd, kd, vd, rd))


def test_matmul_path_gives_the_same_result_without_autograd():
    from trashlib.models.neighborhood_attention import matmul_path

    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(1, 2, 9, 10, 4, generator=g) for _ in range(3))
    with torch.no_grad():
        loop = neighborhood_attention(q, k, v, kernel_size=3, dilation=3)
        with matmul_path():
            gathered = neighborhood_attention(q, k, v, kernel_size=3, dilation=3)
    torch.testing.assert_close(gathered, loop, atol=1e-5, rtol=0)
