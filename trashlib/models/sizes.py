"""Architecture shapes per model size: `tiny` (random init, runs on a laptop CPU), `base` and `large`.

`tiny` exists for tests and CPU runs; `base`/`large` are the published shapes the competition
seed used, so public checkpoints load into them. `tiny` has no stochastic depth (drop_path_rate 0): a
random-init tiny model on 2 CPU cores learned faster without drop path and colour/scale jitter. A
`pretrained` checkpoint's own config always wins over these tables (see `pretrained.py`).

`tiny` is shaped for the cpu profile's 128-pixel working resolution (issue 20):
- Swin windows of 4: the stages' 32, 16, 8 and 4-pixel maps split into windows without padding, where
  windows of 7 padded them to 35, 21, 14 and 7 (3x the tokens in stages 3 and 4). The pixel decoder and
  the transformer decoder attend over the whole image anyway.
- one deformable encoder layer in the pixel decoder (was 2): its sampling's backward is the slowest
  kernel of a CPU step.
- a pixel decoder of 64 channels (`feature_size`, was 128; the mask features and the queries keep 128):
  its 3x3 output convolution on the stride-4 map alone was a quarter of the forward's matrix work, which
  is what a CPU without native bf16 spends its step on.
- 3 mask predictions per image (`decoder_layers` 3: the initial queries' and two decoder layers'; was 4),
  matched and scored on 512 sampled points (was 1024). The two layers attend to the 1/32 and 1/16 levels;
  the 1/8 level reaches the masks through the pixel decoder's mask features only (its unread projection is
  frozen: `mask2former.freeze_unread_levels`).
- MaskDINO's tiny has 10 denoising queries and SegViT's tiny patch 8 (a 16x16 token grid at 128 pixels).
What each choice measured, and the choices that measured no gain (fewer queries, fewer deformable points),
are in docs/experiments.md.
"""
from __future__ import annotations

import hashlib
import json

MODEL_SIZES = ("tiny", "base", "large")  # model size presets (not object sizes)

SWIN = {
    "tiny": dict(embed_dim=48, depths=[2, 2, 2, 2], num_heads=[3, 6, 12, 24], window_size=4, drop_path_rate=0.0),
    # Swin-B / Swin-L, window 12 (the IN-21k 384 checkpoints behind mask2former-swin-*-ade-semantic)
    "base": dict(embed_dim=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32], window_size=12, drop_path_rate=0.3),
    "large": dict(embed_dim=192, depths=[2, 2, 18, 2], num_heads=[6, 12, 24, 48], window_size=12, drop_path_rate=0.3),
}

# Mask2Former head; {} = transformers' defaults (hidden 256, 100 queries, 6 encoder / 10 decoder layers,
# 12544 loss points per mask). tiny samples 512 of the 32x32 = 1024 mask-logit pixels of a 128x128 working
# image: the default made the Hungarian matcher's cost matrices 3/4 of a CPU training step. tiny's pixel
# decoder width, its one encoder layer and its three predictions: see the module docstring.
MASK2FORMER_HEAD = {
    "tiny": dict(feature_size=64, mask_feature_size=128, hidden_dim=128, encoder_feedforward_dim=256,
                 dim_feedforward=512, num_queries=50, encoder_layers=1, decoder_layers=3, train_num_points=512),
    "base": {},
    "large": {},
}

# MaskDINO head (maskdino.py): Mask2FormerConfig keys as in MASK2FORMER_HEAD (decoder_layers counts the initial
# queries' prediction too: 10 = 9 deformable layers), plus the DINO decoder's. base/large: the official ADE20K
# semantic config (IDEA-Research/MaskDINO configs/ade20k/semantic-segmentation/maskdino_R50_bs16_160k_steplr.yaml:
# hidden 256, 100 queries, 9 decoder layers with feed-forward 2048, 6 encoder layers with feed-forward 1024,
# 3 levels, class weight 4, denoising "seg" with 100 queries and noise 0.4, box L1 5 / GIoU 2), whose other
# shapes are transformers' defaults; query selection on (see maskdino.py). tiny: the shapes of MASK2FORMER_HEAD's
# tiny before its pixel decoder narrowed (MaskDINO's decoder needs feature_size == hidden_dim), and 10 denoising queries, since each denoising mask adds point losses in every round (the step times
# with 10, 20 and 100: docs/experiments.md).
_MASKDINO_DINO = dict(query_selection=True, dn_noise_scale=0.4, decoder_points=4, box_weight=5.0, giou_weight=2.0)
MASKDINO_HEAD = {
    "tiny": dict(feature_size=128, mask_feature_size=128, hidden_dim=128, encoder_feedforward_dim=512,
                 dim_feedforward=512, num_queries=50, encoder_layers=1, decoder_layers=4, train_num_points=1024,
                 class_weight=4.0, dn_num=10, **_MASKDINO_DINO),
    "base": dict(class_weight=4.0, dn_num=100, **_MASKDINO_DINO),
    "large": dict(class_weight=4.0, dn_num=100, **_MASKDINO_DINO),
}

# DiNAT; dilations per stage and layer. base/large follow the published segmentation configs
# (kernel 7 at 512 for base; DiNAT-L 11x11 as in the ADE20K Mask2Former/OneFormer configs, whose
# stage-1 dilation 20 exceeds a 128-wide stage: transformers' DinatLayer then zero-pads to k*d).
DINAT = {
    "tiny": dict(embed_dim=48, depths=[2, 2, 2, 2], num_heads=[3, 6, 12, 24], kernel_size=7, mlp_ratio=2.0,
                 dilations=[[1, 4], [1, 2], [1, 2], [1, 1]], drop_path_rate=0.0, layer_scale_init_value=0.0),
    "base": dict(embed_dim=128, depths=[3, 4, 18, 5], num_heads=[4, 8, 16, 32], kernel_size=7, mlp_ratio=2.0,
                 dilations=[[1, 16, 1], [1, 8, 1, 8], [1, 4] * 9, [1, 2, 1, 2, 1]], drop_path_rate=0.3,
                 layer_scale_init_value=1e-5),
    "large": dict(embed_dim=192, depths=[3, 4, 18, 5], num_heads=[6, 12, 24, 48], kernel_size=11, mlp_ratio=2.0,
                  dilations=[[1, 20, 1], [1, 5, 1, 10], [1, 2, 1, 3, 1, 4, 1, 5, 1, 2, 1, 3, 1, 4, 1, 5, 1, 5],
                             [1, 2, 1, 2, 1]], drop_path_rate=0.3, layer_scale_init_value=0.0),
}

CONVNEXT = {
    "tiny": dict(hidden_sizes=[48, 96, 192, 384], depths=[2, 2, 2, 2], drop_path_rate=0.0),
    "base": dict(hidden_sizes=[128, 256, 512, 1024], depths=[3, 3, 27, 3], drop_path_rate=0.4),
    "large": dict(hidden_sizes=[192, 384, 768, 1536], depths=[3, 3, 27, 3], drop_path_rate=0.4),
}

# UperNet head widths (hidden_size of the PPM/FPN, auxiliary FCN channels)
UPERNET_HEAD = {
    "tiny": dict(hidden_size=128, auxiliary_channels=64),
    "base": dict(hidden_size=512, auxiliary_channels=256),
    "large": dict(hidden_size=512, auxiliary_channels=256),
}

# SegFormer: tiny = MiT-b0, base = MiT-b2, large = MiT-b5
SEGFORMER = {
    "tiny": dict(hidden_sizes=[32, 64, 160, 256], depths=[2, 2, 2, 2], decoder_hidden_size=256, drop_path_rate=0.0),
    "base": dict(hidden_sizes=[64, 128, 320, 512], depths=[3, 4, 6, 3], decoder_hidden_size=768),
    "large": dict(hidden_sizes=[64, 128, 320, 512], depths=[3, 6, 40, 3], decoder_hidden_size=768),
}

# SegViT: a plain ViT (transformers ViTConfig fields, plus stochastic depth) and the ATM decoder, whose width
# (half the ViT's) and heads (the ViT's) follow from the ViT. base/large: the official configs of
# github.com/zbwxp/SegVit (configs/_base_/models/seg_vit-b16.py: ViT-B/16, layers 6, 8, 12; configs/segvit/
# segvit_vit-l_jax_512x512_80k_cocostuff10k.py: ViT-L/16 at 512, layers 8, 16, 24; 3 ATM layers per stage).
# tiny: a ViT-Ti width, 6 layers, patch 8: a 128-pixel image is a 16x16 token grid (patch 16: 8x8); it learned
# more per step on the cpu trunk recipe, and costs at 512-pixel inference, 4096 tokens (docs/experiments.md).
VIT = {
    "tiny": dict(hidden_size=192, num_hidden_layers=6, num_attention_heads=3, intermediate_size=768, patch_size=8,
                 image_size=128, drop_path_rate=0.0),
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                 patch_size=16, image_size=512, drop_path_rate=0.1),
    "large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                  patch_size=16, image_size=512, drop_path_rate=0.3),
}
ATM_HEAD = {
    "tiny": dict(out_indices=[1, 3, 5], layers_per_stage=3, dropout=0.0),
    "base": dict(out_indices=[5, 7, 11], layers_per_stage=3, dropout=0.1),
    "large": dict(out_indices=[7, 15, 23], layers_per_stage=3, dropout=0.1),
}


def presets_fingerprint(size: str) -> str:
    """sha1 of every architecture table's entry for `size`: a finished run trained under other presets is stale."""
    tables = {"SWIN": SWIN, "MASK2FORMER_HEAD": MASK2FORMER_HEAD, "DINAT": DINAT, "CONVNEXT": CONVNEXT,
              "UPERNET_HEAD": UPERNET_HEAD, "SEGFORMER": SEGFORMER}
    tables["MASKDINO_HEAD"] = MASKDINO_HEAD
    tables.update(VIT=VIT, ATM_HEAD=ATM_HEAD)
    text = json.dumps({name: table.get(size) for name, table in tables.items()}, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()


def size_config(table: dict, size: str, what: str) -> dict:
    """A copy of `table[size]`; raises ValueError listing the valid sizes."""
    if size not in table:
        raise ValueError(f"unknown size {size!r} for {what}; valid sizes: {', '.join(table)}")
    return {k: (list(v) if isinstance(v, list) else v) for k, v in table[size].items()}
