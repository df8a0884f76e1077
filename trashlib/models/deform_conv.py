"""Modulated deformable convolution (DCNv2) in plain PyTorch, with torchvision.ops.deform_conv2d's arguments.

torchvision would be the well-kept kernel, but no torchvision runs beside this project's CPU torch 2.13
wheel: torchvision 0.28.0, the release pinned to torch 2.13.0, fails to import there ("operator
torchvision::nms does not exist", ../shared/STACK.md; re-checked for this module), and a broken
torchvision also changes which image processors transformers picks. So each kernel tap is one bilinear
`grid_sample` of the input at its offset positions, and the taps are contracted with the weights by
one 1x1 convolution. The arithmetic is torchvision's (and DCNv2's): a sampling point outside the map reads 0,
each of its four neighbours outside the map counts 0, offsets are (dy, dx) pairs per offset group and
tap, the modulation mask multiplies each tap. Memory: the sampled taps, (N, C * kh * kw, H_out * W_out).
Sampling positions and the contraction are fp32 (fp64 for fp64 input), also under autocast.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def deform_conv2d(input: torch.Tensor, offset: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                  *, stride=1, padding=0, dilation=1, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Deformable convolution (v2 with `mask`), the semantics and argument layout of torchvision.ops.deform_conv2d.

    Input channels are split into G = offset.shape[1] // (2 * kh * kw) contiguous offset groups.

    Shape:
        input: (N, C, H, W); weight: (O, C, kh, kw); bias: (O,)
        offset: (N, 2 * G * kh * kw, H_out, W_out), (dy, dx) per group and tap (row-major taps)
        mask: (N, G * kh * kw, H_out, W_out) or None (all ones)
        returns: (N, O, H_out, W_out)
    """
    n, c, h, w = input.shape
    out_channels, _, kh, kw = weight.shape
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    h_out, w_out = offset.shape[-2:]
    taps = kh * kw
    groups = offset.shape[1] // (2 * taps)
    if groups * 2 * taps != offset.shape[1] or c % groups:
        raise ValueError(f"offset has {offset.shape[1]} channels: not 2 x groups x {taps} taps with groups dividing {c}")
    # sampling positions in fp32 (or fp64) whatever the autocast: bf16 cannot tell pixel 100 from 100.5
    dtype = torch.float64 if input.dtype == torch.float64 else torch.float32
    # each tap's base sampling position in input pixels: (taps, H_out, W_out)
    ky, kx = torch.meshgrid(torch.arange(kh, device=input.device), torch.arange(kw, device=input.device), indexing="ij")
    oy = torch.arange(h_out, device=input.device) * sh - ph
    ox = torch.arange(w_out, device=input.device) * sw - pw
    base_y = (ky.reshape(-1, 1, 1) * dh + oy.view(1, -1, 1)).to(dtype)
    base_x = (kx.reshape(-1, 1, 1) * dw + ox.view(1, 1, -1)).to(dtype)
    offset = offset.to(dtype).view(n, groups, taps, 2, h_out, w_out)
    y = base_y + offset[:, :, :, 0]  # (N, G, taps, H_out, W_out)
    x = base_x + offset[:, :, :, 1]
    # pixel centres -> grid_sample's [-1, 1] (align_corners=False: defined for maps one pixel wide too)
    grid = torch.stack([(2 * x + 1) / w - 1, (2 * y + 1) / h - 1], dim=-1)
    grid = grid.reshape(n * groups, taps * h_out, w_out, 2)
    sampled = F.grid_sample(input.reshape(n * groups, c // groups, h, w).to(dtype), grid, mode="bilinear",
                            padding_mode="zeros", align_corners=False)  # (N*G, C/G, taps*H_out, W_out)
    sampled = sampled.view(n, groups, c // groups, taps, h_out, w_out)
    if mask is not None:
        sampled = sampled * mask.to(dtype).view(n, groups, 1, taps, h_out, w_out)
    # channel-major, then tap: the weight's (C, kh, kw) order, contracted by a 1x1 convolution (a matmul was
    # slower on a CPU: its operands are transposed first). In fp32 even under autocast: a bf16 copy of the
    # columns measured no faster on a CPU (docs/experiments.md)
    columns = sampled.reshape(n, c * taps, h_out, w_out)
    with torch.autocast(input.device.type, enabled=False):
        out = F.conv2d(columns, weight.reshape(out_channels, c * taps, 1, 1).to(dtype),
                       None if bias is None else bias.to(dtype))
    return out.to(input.dtype)


class ModulatedDeformConv(nn.Module):
    """DCNv2 as FaPN uses it: offsets and modulation from a zero-initialised conv over a separate guide map.

    At initialisation the offsets are 0 and every mask 0.5: half of a plain convolution of `input`.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, *, guide_channels: int | None = None,
                 groups: int = 8):
        super().__init__()
        self.kernel_size, self.groups = kernel_size, groups
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        bound = (in_channels * kernel_size * kernel_size) ** -0.5  # DCNv2's uniform init
        nn.init.uniform_(self.weight, -bound, bound)
        # per group and tap: dy, dx (torchvision's layout) and the mask logit
        self.offset_mask = nn.Conv2d(guide_channels or in_channels, groups * 3 * kernel_size * kernel_size,
                                     kernel_size, padding=kernel_size // 2)
        nn.init.zeros_(self.offset_mask.weight)
        nn.init.zeros_(self.offset_mask.bias)

    def forward(self, input: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        """Shape: input (N, C, H, W); guide (N, C_guide, H, W); returns (N, O, H, W)."""
        taps = self.groups * self.kernel_size ** 2
        offset, mask = self.offset_mask(guide).split([2 * taps, taps], dim=1)
        return deform_conv2d(input, offset, self.weight, self.bias, padding=self.kernel_size // 2,
                             mask=mask.sigmoid())
