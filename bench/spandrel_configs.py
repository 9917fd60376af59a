"""Hyper-parameters of the released checkpoints of every architecture spandrel detects.

Data for the spandrel import benchmark: one ``Released`` entry per architecture and
released scale (x2 and x4 where the authors released both, x1 for restoration nets),
plus at most one notable variant per architecture. ``build`` makes the net at those
hyper-parameters with seeded random weights, so a benchmark can save its state dict and
import it without downloading anything: spandrel reads that state dict as it reads the
released file (same architecture, scale and tensor shapes; key names may differ where
spandrel renames them, e.g. new-arch ESRGAN). The weights are random, so shapes, speed and
import paths can be measured, image quality cannot.

Sources: the authors' option files and test scripts, spandrel 0.4.2's loaders (which infer
these values back from a state dict) and its tests (which name the released files). Every
entry round-trips through ``spandrel.ModelLoader().load_from_state_dict``: the same
architecture id, scale and parameter count (the count is in each label). ``big`` marks
nets of about 14M parameters or more (DRCT x2, 14.0M, is the smallest; RGT, 13.4M, is not).
Only spandrel's main registry is covered, not ``spandrel_extra_arches``. The tables are
hand-wrapped (``# fmt: skip``): formatted one argument a line they would triple in length.
"""

from __future__ import annotations

import copy
import importlib
from dataclasses import dataclass, field

import torch

_PKG = "spandrel.architectures"


@dataclass(frozen=True)
class Released:
    """One released checkpoint: where its class lives and the kwargs it was built with."""

    arch: str  # spandrel architecture id, e.g. "SwinIR"
    label: str  # short human label with the parameter count
    scale: int
    module: str  # importable path of the module that defines the class
    cls: str  # class name
    kwargs: dict = field(hash=False)  # constructor kwargs of the released checkpoint
    source: str  # the released file these come from
    big: bool = False  # about 14M parameters or more


def _r(arch: str, scale: int, label: str, source: str, where: str, big: bool = False, /, **kw):
    """An entry; ``where`` is ``"module_file:Class"`` inside ``<arch>/__arch``."""
    mod, cls = where.split(":")
    return Released(arch, label, scale, f"{_PKG}.{arch}.__arch.{mod}", cls, kw, source, big)


# --- shared hyper-parameters (the "medium" transformer SR recipe and friends) ---
_SWIN_M = dict(
    img_size=64, window_size=8, img_range=1.0, depths=[6] * 6, embed_dim=180,
    num_heads=[6] * 6, mlp_ratio=2.0, resi_connection="1conv",
)  # fmt: skip
_HAT = dict(
    img_size=64, window_size=16, compress_ratio=3, squeeze_factor=30, conv_scale=0.01,
    overlap_ratio=0.5, img_range=1.0, depths=[6] * 6, embed_dim=180, num_heads=[6] * 6,
    mlp_ratio=2.0, upsampler="pixelshuffle", resi_connection="1conv",
)  # fmt: skip
_DAT = dict(
    img_size=64, img_range=1.0, split_size=[8, 32], depth=[6] * 6, embed_dim=180,
    num_heads=[6] * 6, expansion_factor=4.0, resi_connection="1conv",
)  # fmt: skip
_ATD = dict(
    img_size=64, embed_dim=210, depths=[6] * 6, num_heads=[6] * 6, window_size=16,
    category_size=256, num_tokens=128, reducted_dim=20, convffn_kernel_size=5,
    img_range=1.0, mlp_ratio=2.0, upsampler="pixelshuffle", resi_connection="1conv",
)  # fmt: skip
_DRCT = dict(
    img_size=64, window_size=16, img_range=1.0, depths=[6] * 6, embed_dim=180,
    num_heads=[6] * 6, gc=32, mlp_ratio=2.0, upsampler="pixelshuffle", resi_connection="1conv",
)  # fmt: skip
_RGT = dict(
    img_size=64, img_range=1.0, depth=[6] * 8, embed_dim=180, num_heads=[6] * 8,
    mlp_ratio=2.0, resi_connection="1conv", split_size=[8, 32], c_ratio=0.5,
)  # fmt: skip
# GRL config/model/grl/grl_base.yaml with config/experiment/sr/grl/grl_p256.yaml overrides
_GRL_B = dict(
    img_size=64, embed_dim=180, img_range=1.0, upsampler="pixelshuffle",
    depths=[4, 4, 8, 8, 8, 4, 4], num_heads_window=[3] * 7, num_heads_stripe=[3] * 7,
    window_size=32, stripe_size=[64, 64], stripe_groups=[None, None], stripe_shift=True,
    mlp_ratio=2.0, qkv_proj_type="linear", anchor_proj_type="avgpool", anchor_one_stage=True,
    anchor_window_down_factor=4, out_proj_type="linear", conv_type="1conv",
    local_connection=True,
)  # fmt: skip
_PLKSR = dict(dim=64, n_blocks=28, kernel_size=17, split_ratio=0.25, ccm_type="DCCM", use_ea=True)
_CRAFT = dict(
    window_size=16, embed_dim=48, depths=[2] * 4, num_heads=[6] * 4, split_size_0=4,
    split_size_1=16, mlp_ratio=2.0, img_range=1.0, resi_connection="1conv",
)  # fmt: skip
_SEEMORE_T = dict(
    num_experts=3, num_layers=6, embedding_dim=36, img_range=1.0, use_shuffle=True,
    global_kernel_size=11, recursive=2, lr_space="exp", topk=1,
)  # fmt: skip
_IPT = dict(
    patch_size=48, patch_dim=3, n_feats=64, rgb_range=255, n_colors=3, num_heads=12,
    num_layers=12, num_queries=1, mlp=True, pos_every=False, no_pos=False, no_norm=False,
)  # fmt: skip
_RRDB = "RRDB:RRDBNet"

CONFIGS: tuple[Released, ...] = (
    # ESRGAN: Real-ESRGAN docs/model_zoo.md; x2plus unshuffles by 2 and upsamples by 4
    _r("ESRGAN", 2, "RealESRGAN x2plus (16.7M)", "RealESRGAN_x2plus.pth", _RRDB, True,
       in_nc=12, out_nc=3, num_filters=64, num_blocks=23, scale=4, shuffle_factor=2),
    _r("ESRGAN", 4, "RealESRGAN x4plus (16.7M)", "RealESRGAN_x4plus.pth", _RRDB, True,
       in_nc=3, out_nc=3, num_filters=64, num_blocks=23, scale=4),
    _r("ESRGAN", 4, "RealESRGAN x4plus anime 6B (4.5M)", "RealESRGAN_x4plus_anime_6B.pth",
       _RRDB, in_nc=3, out_nc=3, num_filters=64, num_blocks=6, scale=4),
    # Compact (SRVGGNet): Real-ESRGAN model zoo; only x4 .pth files were released
    _r("Compact", 4, "realesr-general-x4v3 (1.2M)", "realesr-general-x4v3.pth",
       "SRVGG:SRVGGNetCompact", num_in_ch=3, num_out_ch=3, num_feat=64, num_conv=32,
       upscale=4, act_type="prelu"),
    _r("Compact", 4, "realesr-animevideov3 (0.6M)", "realesr-animevideov3.pth",
       "SRVGG:SRVGGNetCompact", num_in_ch=3, num_out_ch=3, num_feat=64, num_conv=16,
       upscale=4, act_type="prelu"),
    # SPAN: hongyuanyu/SPAN checkpoints (48 channels); the files keep the training-time
    # multi-branch convs that spandrel detects by (about 0.4M once folded for deployment)
    *(_r("SPAN", s, f"SPAN ch48 x{s} ({n}, train-time convs)", f"spanx{s}_ch48.pth",
         "span:SPAN", num_in_ch=3, num_out_ch=3, feature_channels=48, upscale=s, norm=True)
      for s, n in ((2, "2.2M"), (4, "2.2M"))),
    # SwinIR: main_test_swinir.py (classical M s64w8; real-world L)
    *(_r("SwinIR", s, f"SwinIR-M x{s} classical ({n})",
         f"001_classicalSR_DF2K_s64w8_SwinIR-M_x{s}.pth", "SwinIR:SwinIR",
         upscale=s, upsampler="pixelshuffle", **_SWIN_M)
      for s, n in ((2, "11.8M"), (4, "11.9M"))),
    _r("SwinIR", 4, "SwinIR-L x4 real-world (28.0M)",
       "003_realSR_BSRGAN_DFOWMFC_s64w8_SwinIR-L_x4_GAN.pth", "SwinIR:SwinIR", True,
       upscale=4, img_size=64, window_size=8, img_range=1.0, depths=[6] * 9, embed_dim=240,
       num_heads=[8] * 9, mlp_ratio=2.0, upsampler="nearest+conv", resi_connection="3conv"),
    # Swin2SR: main_test_swin2sr.py (classical s64w8; real-world nearest+conv)
    *(_r("Swin2SR", s, f"Swin2SR x{s} classical ({n})", f"Swin2SR_ClassicalSR_X{s}_64.pth",
         "Swin2SR:Swin2SR", upscale=s, upsampler="pixelshuffle", **_SWIN_M)
      for s, n in ((2, "12.1M"), (4, "12.2M"))),
    _r("Swin2SR", 4, "Swin2SR x4 real-world (12.1M)",
       "Swin2SR_RealworldSR_X4_64_BSRGAN_PSNR.pth", "Swin2SR:Swin2SR",
       upscale=4, upsampler="nearest+conv", **_SWIN_M),
    # HAT: options/test/HAT_SRx*.yml and HAT-L_SRx4_ImageNet-pretrain.yml
    *(_r("HAT", s, f"HAT x{s} ({n})", f"HAT_SRx{s}.pth", "HAT:HAT", True, upscale=s, **_HAT)
      for s, n in ((2, "20.6M"), (4, "20.8M"))),
    _r("HAT", 4, "HAT-L x4 (40.9M)", "HAT-L_SRx4_ImageNet-pretrain.pth", "HAT:HAT", True,
       upscale=4, **{**_HAT, "depths": [6] * 12, "num_heads": [6] * 12}),
    # DAT: options/Test/test_DAT_x*.yml and test_DAT_light_x4.yml
    *(_r("DAT", s, f"DAT x{s} ({n})", f"DAT_x{s}.pth", "DAT:DAT", True, upscale=s, **_DAT)
      for s, n in ((2, "14.7M"), (4, "14.8M"))),
    _r("DAT", 4, "DAT-light x4 (0.6M)", "DAT_light_x4.pth", "DAT:DAT", upscale=4, img_size=64,
       img_range=1.0, split_size=[8, 32], depth=[18], embed_dim=60, num_heads=[6],
       expansion_factor=2.0, resi_connection="3conv", upsampler="pixelshuffledirect"),
    # ATD: options/test/00*_ATD_SRx*_finetune.yml and 103_ATD_light_SRx4_finetune.yml
    _r("ATD", 2, "ATD x2 (20.1M)", "001_ATD_SRx2_finetune.pth", "atd_arch:ATD", True,
       upscale=2, **_ATD),
    _r("ATD", 4, "ATD x4 (20.3M)", "003_ATD_SRx4_finetune.pth", "atd_arch:ATD", True,
       upscale=4, **_ATD),
    _r("ATD", 4, "ATD-light x4 (0.8M)", "103_ATD_light_SRx4_finetune.pth", "atd_arch:ATD",
       upscale=4, img_size=64, embed_dim=48, depths=[6] * 4, num_heads=[4] * 4, window_size=16,
       category_size=128, num_tokens=64, reducted_dim=8, convffn_kernel_size=7, img_range=1.0,
       mlp_ratio=1.0, upsampler="pixelshuffledirect", resi_connection="1conv"),
    # SAFMN: sunny2109/SAFMN options (dim 36, 8 blocks)
    *(_r("SAFMN", s, f"SAFMN x{s} (0.2M)", f"SAFMN_DF2K_x{s}.pth", "safmn:SAFMN",
         dim=36, n_blocks=8, ffn_scale=2.0, upscaling_factor=s)
      for s in (2, 4)),
    # OmniSR: Francis0625/Omni-SR options (64 feats, 5 residual groups, window 8)
    *(_r("OmniSR", s, f"OmniSR x{s} ({n})", f"{s}x-OmniSR-DF2K.pth", "OmniSR:OmniSR",
         num_in_ch=3, num_out_ch=3, num_feat=64, block_num=1, pe=True, window_size=8,
         res_num=5, up_scale=s, bias=True)
      for s, n in ((2, "0.78M"), (4, "0.81M"))),
    # RealCUGAN: bilibili/ailab Real-CUGAN (no-denoise models)
    _r("RealCUGAN", 2, "Real-CUGAN up2x (1.3M)", "up2x-latest-no-denoise.pth",
       "upcunet_v3:UpCunet2x", in_channels=3, out_channels=3),
    _r("RealCUGAN", 4, "Real-CUGAN up4x (1.4M)", "up4x-latest-no-denoise.pth",
       "upcunet_v3:UpCunet4x", in_channels=3, out_channels=3),
    # PLKSR: dslisleedh/PLKSR options/test/test_PLKSR_DIV2K_X*_64_28_0.25_17.yaml;
    # RealPLKSR: neosr's realplksr defaults (the variant community models use)
    *(_r("PLKSR", s, f"PLKSR x{s} (7.4M)", f"PLKSR_X{s}_DIV2K.pth", "PLKSR:PLKSR",
         upscaling_factor=s, lk_type="PLK", **_PLKSR)
      for s in (2, 4)),
    _r("PLKSR", 4, "RealPLKSR x4 (7.4M)", "4x_realplksr_mssim_pretrain.pth",
       "RealPLKSR:RealPLKSR", dim=64, n_blocks=28, upscaling_factor=4, kernel_size=17,
       split_ratio=0.25, use_ea=True, norm_groups=4),
    # RCAN: yulunzhang/RCAN (10 groups of 20 blocks, 64 feats)
    *(_r("RCAN", s, f"RCAN x{s} ({n})", f"RCAN_BIX{s}.pt", "rcan_arch:RCAN", True,
         scale=s, n_resgroups=10, n_resblocks=20, n_feats=64, reduction=16, rgb_range=255)
      for s, n in ((2, "15.4M"), (4, "15.6M"))),
    # DRCT: ming053l/DRCT options/test/DRCT_SRx*.yml and DRCT-L_SRx4_ImageNet-pretrain.yml
    *(_r("DRCT", s, f"DRCT x{s} ({n})", f"DRCT_SRx{s}.pth", "drct_arch:DRCT", True,
         upscale=s, **_DRCT)
      for s, n in ((2, "14.0M"), (4, "14.1M"))),
    _r("DRCT", 4, "DRCT-L x4 (27.6M)", "DRCT-L_SRx4_ImageNet-pretrain.pth", "drct_arch:DRCT",
       True, upscale=4, **{**_DRCT, "depths": [6] * 12, "num_heads": [6] * 12}),
    # DITN: yongliuy/DITN (real-world model, released at x4 only)
    _r("DITN", 4, "DITN-Real x4 (0.4M)", "DITN_Real_x4.pth", "DITN_Real:DITN_Real",
       inp_channels=3, dim=60, ITL_blocks=4, SAL_blocks=4, UFONE_blocks=1,
       ffn_expansion_factor=2, bias=False, LayerNorm_type="WithBias", patch_size=8, upscale=4),
    # SwiftSRGAN: Koushik0901/Swift-SRGAN release v0.1
    *(_r("SwiftSRGAN", s, f"Swift-SRGAN x{s} (0.2M)", f"swift_srgan_{s}x.pth.tar",
         "SwiftSRGAN:Generator", in_channels=3, num_channels=64, num_blocks=16,
         upscale_factor=s)
      for s in (2, 4)),
    # GRL: ofsoundof/GRL-Image-Restoration release v1.0.0 (GRL-B; GRL-T at x4)
    *(_r("GRL", s, f"GRL-B x{s} ({n})", f"sr_grl_base_c3x{s}.ckpt", "grl:GRL", True,
         upscale=s, **_GRL_B)
      for s, n in ((2, "20.1M"), (4, "20.2M"))),
    _r("GRL", 4, "GRL-T x4 (0.9M)", "sr_grl_tiny_c3x4.ckpt", "grl:GRL", upscale=4,
       **{**_GRL_B, "embed_dim": 64, "depths": [4] * 4, "num_heads_window": [2] * 4,
          "num_heads_stripe": [2] * 4, "upsampler": "pixelshuffledirect",
          "local_connection": False}),
    # RGT: zhengchen1999/RGT options/test (RGT; RGT-S has 6 groups)
    *(_r("RGT", s, f"RGT x{s} ({n})", f"RGT_x{s}.pth", "rgt:RGT", upscale=s, **_RGT)
      for s, n in ((2, "13.2M"), (4, "13.4M"))),
    _r("RGT", 4, "RGT-S x4 (10.2M)", "RGT_S_x4.pth", "rgt:RGT", upscale=4,
       **{**_RGT, "depth": [6] * 6, "num_heads": [6] * 6}),
    # CRAFT: AVC2-UESTC/CRAFT-SR inference script
    *(_r("CRAFT", s, f"CRAFT x{s} (0.7M)", f"CRAFT_MODEL_X{s}.pth", "CRAFT:CRAFT",
         in_chans=3, upscale=s, **_CRAFT)
      for s in (2, 4)),
    # DCTLSA: zengkun301/DCTLSA pretrained/ (55 feats, 6 modules, 5 heads)
    *(_r("DCTLSA", s, f"DCTLSA x{s} (0.9M)", f"X{s}.pt", "dctlsa:DCTLSA",
         in_nc=3, nf=55, num_modules=6, out_nc=3, upscale=s, num_head=5)
      for s in (2, 4)),
    # SeemoRe: eduardzamfir/seemoredetails, SeemoRe-T (spandrel's tests spell it out)
    *(_r("SeemoRe", s, f"SeemoRe-T x{s} (0.2M)", f"SeemoRe_T_X{s}.pth",
         "seemore_arch:SeemoRe", scale=s, in_chans=3, **_SEEMORE_T)
      for s in (2, 4)),
    # MoSR: umzi2/MoSR defaults (24 blocks, 64 dims, "ps" upsampler; spandrel's tests do not
    # say which upsampler the nomos2 files use)
    *(_r("MoSR", s, f"MoSR x{s} (4.3M)", f"{s}x_nomos2_mosr.pth", "mosr_arch:MoSR",
         in_ch=3, out_ch=3, upscale=s, n_block=24, dim=64, upsampler="ps", kernel_size=7,
         expansion_ratio=1.5, conv_ratio=1.0)
      for s in (2, 4)),
    # MoESR: umzi2/MoESR, released by traiNNer-redux at x4 only
    _r("MoESR", 4, "MoESR x4 (16.6M)", "4x_DF2K_MoESR_500k.safetensors", "MoESR:MoESR", True,
       in_ch=3, out_ch=3, scale=4, dim=64, n_blocks=9, n_block=4, expansion_factor=2.65625,
       expansion_msg=1.5, upsampler="pixelshuffledirect", upsample_dim=64),
    # FDAT: stinkybread/FDAT medium, released by traiNNer-redux at x2 only
    _r("FDAT", 2, "FDAT-M x2 (3.8M)", "2x_DF2K_FDAT_M_500k_fp16.safetensors", "fdat:FDAT",
       num_in_ch=3, num_out_ch=3, scale=2, embed_dim=120, num_groups=4, depth_per_group=3,
       num_heads=4, window_size=8, ffn_expansion_ratio=2.0, aim_reduction_ratio=8,
       mid_dim=64, upsampler_type="transpose+conv", img_range=1.0),
    # AuraSR: fal/AuraSR config.json (GigaGAN-style upsampler, x4)
    _r("AuraSR", 4, "AuraSR v1 x4 (617.6M)", "fal/AuraSR model.safetensors",
       "aura_sr:UnetUpsampler", True, dim=64, image_size=1024, input_image_size=256,
       style_network={"dim_in": 128, "dim_out": 512, "depth": 4},
       up_dim_mults=(1, 2, 4, 8, 16), down_dim_mults=(4, 8, 16), channels=3,
       resnet_block_groups=8, full_attn=(False, False, False, True, True), flash_attn=True,
       self_attn_dim_head=64, self_attn_heads=8, attn_depths=(2, 2, 2, 2, 4),
       mid_attn_depth=4, num_conv_kernels=4, resize_mode="bilinear", unconditional=True,
       skip_connect_scale=0.4),
    # IPT: huawei-noah/Pretrained-IPT option.py defaults with --scale 2 / 4
    *(_r("IPT", s, f"IPT x{s} ({n})", f"IPT_sr{s}.pt", "ipt:IPT", True, scale=[s], **_IPT)
      for s, n in ((2, "115.5M"), (4, "115.6M"))),
    # MMRealSR: TencentARC/MM-RealSR options (RRDB trunk with degradation modulation)
    _r("MMRealSR", 4, "MM-RealSRGAN x4 (52.5M)", "MMRealSRGAN.pth",
       "mmrealsr_arch:MMRRDBNet_test", True, num_in_ch=3, num_out_ch=3, scale=4, num_feat=64,
       num_block=23, num_grow_ch=32, num_degradation=2, degradation_degree_actv="sigmoid",
       num_feats=[64, 128, 256, 512], num_blocks=[2, 2, 2, 2], downscales=[2, 2, 2, 1]),
    # SAFMN-BCIE: sunny2109/SAFMN AIS 2024 test script (x1 JPEG restoration)
    _r("SAFMNBCIE", 1, "SAFMN-BCIE x1 (18.4M)", "SAFMN_BCIE.pth", "safmn_bcie:SAFMN_BCIE", True,
       dim=128, n_blocks=8, num_layers=6, ffn_scale=2.0, upscaling_factor=2),
    # GFPGAN: TencentARC/GFPGAN inference_gfpgan.py (v1.4, clean arch)
    _r("GFPGAN", 1, "GFPGAN v1.4 (86.4M)", "GFPGANv1.4.pth",
       "gfpganv1_clean_arch:GFPGANv1Clean", True, out_size=512, num_style_feat=512,
       channel_multiplier=2, decoder_load_path=None, fix_decoder=False, num_mlp=8,
       input_is_latent=True, different_w=True, narrow=1, sft_half=True),
    # RestoreFormer: wzhouxiff/RestoreFormer config (released via GFPGAN v1.3.4)
    _r("RestoreFormer", 1, "RestoreFormer (72.7M)", "RestoreFormer.pth",
       "restoreformer_arch:RestoreFormer", True, n_embed=1024, embed_dim=256, ch=64, out_ch=3,
       ch_mult=(1, 2, 2, 4, 4, 8), num_res_blocks=2, attn_resolutions=(16,), dropout=0.0,
       in_channels=3, resolution=512, z_channels=256, double_z=False, enable_mid=True,
       head_size=8),
    # LaMa: advimman/lama big-lama (image + mask in, image out)
    _r("LaMa", 1, "big-lama (51.0M)", "big-lama.pt", "LaMa:LaMa", True, in_nc=4, out_nc=3),
    # SCUNet: cszn/SCUNet main_test_scunet_real_application.py
    _r("SCUNet", 1, "SCUNet color real PSNR (18.0M)", "scunet_color_real_psnr.pth",
       "SCUNet:SCUNet", True, in_nc=3, config=[4] * 7, dim=64),
    # FBCNN: jiaxi-jiang/FBCNN main_test_fbcnn_color.py
    _r("FBCNN", 1, "FBCNN color (71.9M)", "fbcnn_color.pth", "FBCNN:FBCNN", True, in_nc=3,
       out_nc=3, nc=[64, 128, 256, 512], nb=4, act_mode="R", downsample_mode="strideconv",
       upsample_mode="convtranspose"),
    # Uformer: ZhendongWang6/Uformer utils/model_utils.py get_arch('Uformer_B')
    _r("Uformer", 1, "Uformer-B SIDD (50.9M)", "Uformer_B.pth", "Uformer:Uformer", True,
       img_size=128, in_chans=3, dd_in=3, embed_dim=32, depths=[1, 2, 8, 8, 2, 8, 8, 2, 1],
       win_size=8, mlp_ratio=4.0, token_projection="linear", token_mlp="leff",
       modulator=True),
    # KBNet: zhangyi-3/KBNet Denoising/Options/sidd.yml and Deraining/Options/kbnet_l.yml
    _r("KBNet", 1, "KBNet-S SIDD (128.4M)", "sidd.pth", "kbnet_s:KBNet_s", True,
       img_channel=3, width=64, middle_blk_num=12, enc_blk_nums=[2, 2, 4, 8],
       dec_blk_nums=[2, 2, 2, 2], lightweight=True, ffn_scale=1.5),
    _r("KBNet", 1, "KBNet-L derain (29.6M)", "derain.pth", "kbnet_l:KBNet_l", True, inp_channels=3,
       out_channels=3, dim=48, num_blocks=[4, 6, 6, 8], num_refinement_blocks=4,
       heads=[1, 2, 4, 8], ffn_expansion_factor=1.5, bias=False),
    # FFTformer: kkkls/FFTformer release pretrain_model (GoPro deblurring)
    _r("FFTformer", 1, "FFTformer GoPro (16.6M)", "fftformer_GoPro.pth",
       "fftformer_arch:FFTformer", True, inp_channels=3, out_channels=3, dim=48,
       num_blocks=[6, 6, 12], num_refinement_blocks=4, ffn_expansion_factor=3, bias=False),
    # NAFNet: megvii-research/NAFNet options/test/GoPro/NAFNet-width{64,32}.yml
    *(_r("NAFNet", 1, f"NAFNet GoPro width{w} ({n})", f"NAFNet-GoPro-width{w}.pth",
         "NAFNet_arch:NAFNet", True, img_channel=3, width=w, middle_blk_num=1,
         enc_blk_nums=[1, 1, 1, 28], dec_blk_nums=[1, 1, 1, 1])
      for w, n in ((64, "67.9M"), (32, "17.1M"))),
    # MixDehazeNet: AmeryXiong/MixDehazeNet (B and S, indoor/ITS)
    *(_r("MixDehazeNet", 1, f"MixDehazeNet-{v} indoor ({n})",
         f"MixDehazeNet-{v.lower()} indoor.pth", "MixDehazeNet:MixDehazeNet", in_chans=3,
         out_chans=4, embed_dims=[24, 48, 96, 48, 24], depths=d)
      for v, n, d in (("B", "6.3M", [4, 4, 8, 4, 4]), ("S", "3.2M", [2, 2, 4, 2, 2]))),
    # DRUNet: cszn/DPIR main_dpir_denoising.py (image + noise-level map in)
    _r("DRUNet", 1, "DRUNet color (32.6M)", "drunet_color.pth", "network_unet:DRUNet", True,
       in_nc=4, out_nc=3, nc=[64, 128, 256, 512], nb=4, act_mode="R",
       downsample_mode="strideconv", upsample_mode="convtranspose"),
    # DnCNN: cszn/KAIR main_test_dncnn.py (batch norm merged, so act "R")
    _r("DnCNN", 1, "DnCNN color blind (0.7M)", "dncnn_color_blind.pth", "network_dncnn:DnCNN",
       in_nc=3, out_nc=3, nc=64, nb=20, act_mode="R", mode="DnCNN"),
    _r("DnCNN", 1, "FDnCNN color (0.7M)", "fdncnn_color.pth", "network_dncnn:DnCNN",
       in_nc=4, out_nc=3, nc=64, nb=20, act_mode="R", mode="FDnCNN"),
    # RetinexFormer: caiyuanhao1998/Retinexformer Options/RetinexFormer_FiveK.yml
    _r("RetinexFormer", 1, "RetinexFormer FiveK (1.6M)", "retinexFormer_FiveK.pth",
       "retinexformer_arch:RetinexFormer", in_channels=3, out_channels=3, n_feat=40, stage=1,
       num_blocks=[1, 2, 2]),
    # HVI-CIDNet: Fediory/HVI-CIDNet (LOLv1 weights)
    _r("HVICIDNet", 1, "HVI-CIDNet LOLv1 (2.0M)", "HVI-CIDNet_lolv1_w_perc.pth",
       "cidnet:CIDNet", channels=[36, 36, 72, 144], heads=[1, 2, 4, 8], norm=False),
)  # fmt: skip


def build(cfg: Released, seed: int = 0) -> torch.nn.Module:
    """The net of ``cfg`` with the weights its own init draws after ``torch.manual_seed(seed)``,
    in eval mode."""
    cls = getattr(importlib.import_module(cfg.module), cfg.cls)
    torch.manual_seed(seed)
    return cls(**copy.deepcopy(cfg.kwargs)).eval()


def by_arch() -> dict[str, list[Released]]:
    """The entries grouped by spandrel architecture id, in ``CONFIGS`` order."""
    out: dict[str, list[Released]] = {}
    for cfg in CONFIGS:
        out.setdefault(cfg.arch, []).append(cfg)
    return out
