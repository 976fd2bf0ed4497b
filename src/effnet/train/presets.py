"""The recipe presets (`--recipe NAME`): the papers' recipes, fine-tuning and the small-data ones,
each a `Recipe` with a comment saying where each value comes from; and the per-model values a
preset may ask for (SPEC C.3)."""

from __future__ import annotations

from dataclasses import replace

from ..errors import UserError
from .recipe import Recipe

# --- per-model values (SPEC C.3: AML efficientnetv2_params; B0-B3 use AutoAugment in the code,
# which effnet.data does not provide, so they train without a policy here) ----------------------
V2_AUG = {  # final RandAugment magnitude, final mixup alpha (= cutmix alpha in the code)
    "efficientnetv2_s": (10.0, 0.0),
    "efficientnetv2_m": (15.0, 0.2),
    "efficientnetv2_l": (20.0, 0.5),
    "efficientnetv2_xl": (20.0, 0.5),
}


def for_model(recipe: Recipe) -> Recipe:
    """Fill the per-model values a preset asks for (`per_model_aug`) from the recipe's model."""
    if not recipe.per_model_aug:
        return recipe
    base = recipe.model.removeprefix("tf_")
    if base not in V2_AUG:
        return recipe
    ra, mix = V2_AUG[base]
    return replace(recipe, randaug_magnitude=ra, mixup=mix, cutmix=mix)


# --- presets -----------------------------------------------------------------------------------
PAPER_V1 = Recipe(
    # SPEC D.1, the TPU code: TF1 RMSProp (decay 0.9, momentum 0.9, eps 1e-3 inside the sqrt),
    # 0.016 per 256 images, 5 warmup epochs, x0.97 every 2.4 epochs staircase on the global step
    # from 0, coupled L2 1e-5 on every non-BN variable (biases included), EMA 0.9999 with the
    # (1+t)/(10+t) warmup over weights and BN statistics, label smoothing 0.1, survival 0.8,
    # the variant's dropout, BN momentum 0.99 (TF) = 0.01 (PyTorch), eps 1e-3.
    # The paper trained at a global batch of 4096 on TPUs; here batch_size is per process and the
    # LR follows the global batch (batch_size * processes * grad_accum) linearly. The EMA's 0.9999
    # is per step at 4096 (ema_base_size): at a smaller global batch each step decays less, so the
    # average spans the paper's ~41 M images (1 / (1 - 0.9999) steps of 4096).
    name="paper-v1",
    bn_momentum=0.01,
    bn_eps=1e-3,
)

PAPER_V2 = replace(
    PAPER_V1,
    # SPEC D.2: as V1 but the code excludes `.*(bias|gamma|beta).*` from weight decay; RandAugment
    # and mixup/cutmix at the per-model final values of SPEC C.3 (no progressive stages here).
    # BN momentum: the paper says 0.99 (TF) = 0.01 (PyTorch); the released code uses 0.9 (= 0.1).
    name="paper-v2",
    wd_exclude="bn_bias",
    per_model_aug=True,
)

FINETUNE = Recipe(
    # Fine-tuning published ImageNet weights on a user's images: a few thousand of them and a few
    # epochs as often as the paper's 10,000 steps at batch 512 (SPEC D.3). Each choice and why:
    # - AdamW 1e-3 per 32 images, decoupled weight decay 0.01, cosine to 0: timm's fine-tuning
    #   defaults, which learn in a few hundred steps. The paper's batch 512 with TF RMSProp (mean
    #   square starting at 1) left a 2-epoch run on 5,784 images 22 tiny steps: 1.6 % top-1 where
    #   timm reached 88 % (REVIEW.md). The LR still scales linearly with the global batch.
    # - Batch 32, no accumulation: enough optimiser steps in a short run.
    # - The new classifier starts at zero (`head_init_scale` 0, BiT) and learns 10x faster than
    #   the pretrained body (`head_lr_scale`, the discriminative fine-tuning of Howard & Ruder
    #   2018). A zero head sends no gradient into the body until it has learnt something, so
    #   its first random steps do not disturb the pretrained features; the top-1 of a mid-run
    #   evaluation in the first epoch is low (60 %), the end is higher. Probes below.
    # - A short warmup (10 % of an epoch) keeps the head's first gradients from wrecking
    #   the pretrained features.
    # - No EMA: at a few hundred steps an EMA of 0.9996 still averages in the early weights; only
    #   the raw weights are evaluated, once per epoch. A decay given with --model-ema-decay is per
    #   step at the preset's batch of 32 (ema_base_size), as timm's is per step.
    # - Random-resized crops of 25-100 % of the image and flips (timm crops down to 8 %, which
    #   destroys small images upsampled to the model's size); evaluation at the weights' own eval
    #   size and crop (the preprocessing travels with the weights).
    # - Train below the eval size (`train_size_ratio` 0.785: 176 px for 224 px weights): the
    #   train-test resolution discrepancy (Touvron et al. 2019, FixRes) makes a random-resized-crop
    #   model see objects larger in training than at test time, so a lower train size costs little
    #   at test time, and each image costs (176/224)^2 = 0.62 of the pixels.
    # - The stem and the first 3 stages keep their pretrained weights and BN statistics
    #   (`frozen_stages` 3; `--set frozen_stages=0` trains the whole body): the generic
    #   high-resolution features need no change for photos, and the backward pass stops before
    #   them, so a train step costs 2.4x less (1 thread, batch 32 at 196 px: 2.93 -> 1.24 s).
    # - No drop path and no dropout (timm's train.py has none for this model either). With the
    #   model's own (Lite0: 0.2 each) a 3-epoch fine-tune of clothing-small (seed 0) reached
    #   79.8 -> 87.6 -> 89.0 % test top-1; without them 87.4 -> 88.2 -> 89.8. A few hundred steps
    #   are too few for regularization to pay, and dropping paths of a pretrained body only
    #   slows its adaptation. Label smoothing 0.1 stays (both papers).
    # - Nothing recomputed in the backward pass: at batch 32 a fine-tune fits in memory anyway
    #   (Lite0 at 224 px: 3.6 GiB peak, timm's 3.7), and keeping activations makes each step
    #   1.42x faster on a 2-core CPU than the from-scratch presets' "activations" (BENCHMARKS.md
    #   `memory`: 1.59 vs 2.24 s per step).
    # - 3 epochs. benchmarks/finetune.py, 3 seeds side by side with timm (BENCHMARKS.md
    #   `finetune`): 91.40 +- 0.97 % in 187 s against timm's 89.25 +- 0.81 % in 588 s; timm's
    #   final top-1 passed at 0.23x / 0.28x / 0.33x of timm's wall time.
    # Probes on clothing-small (3,068 photos, 10 classes, Lite0; benchmarks/finetune.py's effnet
    # arm, 2 threads; test top-1 after each epoch and the wall time at the end; seed 0 unless
    # said, one run each, so +-1 point is noise). timm's train.py behaviour reaches 86.0 -> 90.1
    # in 500 s on seed 0 (89.25 +- 0.81 % in 575 s over seeds 0-2, BENCHMARKS.md):
    # - The whole body at 196 px with a random head (the preset until these probes; its 3-seed
    #   benchmark: 89.78 +- 1.08 % in 441 s at 21.9 img/s): seed 0 87.4 -> 88.2 -> 89.8.
    #   2 epochs at 196 px with the model's drops 79.0 -> 87.6; 1 epoch 75.8; BN momentum 0.1
    #   instead of the weights' TF 0.01, 81.5 -> 85.2; 160 px, 74.7 -> 83.1; progressive sizes
    #   128 -> 192 px (V2 Algorithm 1 inside the fine-tune, no regularization), 59.4 -> 79.0:
    #   the BN statistics of a small-image epoch do not carry to the eval size, and 2 epochs
    #   leave no time to recover.
    # - Frozen stages, 196 px, random head, 3 epochs: 2 stages 78.5 -> 88.4 -> 90.3 % in 366 s;
    #   3 stages, seeds 0-2, 89.78 / 89.52 / 89.25 % in 292 / 281 / 250 s (35-40 img/s).
    #   2 epochs: 3 stages 86.8 -> 89.0 in 181 s; 4 stages 85.5 -> 86.8 in 155 s.
    # - 3 frozen stages at 176 px: 2 epochs 78.8 -> 87.4 in 128 s (54 img/s); 3 epochs
    #   79.3 -> 88.2 -> 88.4 in 228 s; with the zero head 59.7 -> 92.2 -> 91.7 in 234 s (seed 1:
    #   77.4 -> 88.7 -> 92.2 in 242 s).
    #   At 196 px, 2 epochs, the zero head: 62.1 -> 89.8 in 181 s (random head 89.0).
    # - A DataLoader worker beside the 2 compute threads: the same numbers (seeded sampling) in
    #   186 s against 181 s in-process. Decoding is 0.8 ms and augmenting 1.4 ms of the ~22 ms
    #   each image costs, so a decoded-image cache would save under 4 %.
    name="finetune",
    model="efficientnetv2_s",
    opt="adamw",
    lr=1e-3,
    lr_base_size=32,
    opt_eps=1e-8,
    weight_decay=0.01,
    wd_exclude="bn_bias",
    head_lr_scale=10.0,
    head_init_scale=0.0,
    frozen_stages=3,
    sched="cosine",
    epochs=3,
    warmup_epochs=0.1,
    batch_size=32,
    ema_decay=0.0,
    ema_base_size=32,
    bn_momentum=None,  # fine-tuning keeps the BN conventions of the model the weights come from
    dropout=0.0,
    drop_path=0.0,
    bn_eps=None,
    scale=(0.25, 1.0),
    train_size_ratio=0.785,
    recompute="off",
)

FINETUNE_PAPER = Recipe(
    # SPEC D.3 V2 transfer learning, for large target sets. The PAPER's values where it states
    # them (batch 512, lr 0.001 with cosine decay, 10,000 steps, no weight decay, cutout); the
    # code's values where the paper is silent (EMA 0.9996 per step at its batch 512, label
    # smoothing 0.1, 1 warmup epoch, survival 0.8, train size = eval size). The code instead uses
    # a constant LR and weight decay 1e-5. Global batch 512 = 64 per process x 8 accumulation
    # steps on one device; lr 0.001 per 512 images, so it scales linearly when more processes
    # raise the global batch (and the EMA's per-step decay with it, ema_base_size).
    name="finetune-paper",
    model="efficientnetv2_s",
    opt="rmsproptf",
    lr=0.001,
    lr_base_size=512,
    batch_size=64,
    grad_accum=8,
    sched="cosine",
    epochs=1,
    steps=10_000,
    warmup_epochs=1.0,
    weight_decay=0.0,
    wd_exclude="bn_bias",
    ema_decay=0.9996,
    ema_base_size=512,
    scale=None,  # the `ft` pipeline resizes without cropping
    cutout=True,
)

QUICK = Recipe(
    # Small data on a CPU in a few minutes (the demo: built-in digits at 32 px, a phi=-4 B0 of
    # 1.0 M parameters): AdamW with cosine decay after one warmup epoch, and a short EMA (0.97 per
    # step at batch 64: a horizon of ~1.5 epochs at 22 steps per epoch, kept in images at another
    # batch). Digits are not mirror-symmetric, so no flip, and crops keep 80-100 % of the image.
    # No label smoothing: tuned on digits, it cost ~2 points at this length. Reaches ~97 % val
    # top-1 in 20 epochs (BENCHMARKS.md). Nothing recomputed in the backward pass: 32 px images
    # need little memory, and keeping the activations makes a step 1.4x faster (1 thread, batch
    # 64: 1.33-1.55 -> 0.94-1.02 ms per image).
    name="quick",
    model="efficientnet_b0",
    phi=-4.0,
    opt="adamw",
    lr=6e-3,
    lr_base_size=0,
    opt_eps=1e-8,
    weight_decay=0.05,
    wd_exclude="bn_bias",
    sched="cosine",
    epochs=20,
    warmup_epochs=1.0,
    batch_size=64,
    label_smoothing=0.0,
    dropout=0.1,
    drop_path=0.05,
    bn_momentum=None,
    bn_eps=None,
    ema_decay=0.97,
    ema_base_size=64,  # its batch: the same per-step decay as it was tuned with
    recompute="off",
    img_size=32,
    eval_size=32,
    hflip=False,
    scale=(0.8, 1.0),
)

SHORT = replace(
    # A few epochs on a few thousand natural images (CIFAR-10 subsets: the benchmarks, and a
    # proxy for searches): `quick` tuned to learn fast rather than to generalise. Probes on
    # CIFAR-10 (benchmarks/train_cifar10.py docstring): a zero head gained ~8 points in 4 epochs
    # over the papers' head init; dropout, stochastic depth and a 1-epoch warmup only slowed runs
    # that are nowhere near overfitting; EMA over a few hundred steps tracks the raw weights and
    # doubles evaluation time; batch 64 at lr 4e-3 beat batch 32 at 2e-3.
    QUICK,
    name="short",
    lr=4e-3,
    warmup_epochs=0.3,
    dropout=0.0,
    drop_path=0.0,
    ema_decay=0.0,
    hflip=True,
    head_init_scale=0.0,
    # the images' size is the model's (or the weights'), not the digits demo's 32 px: `effnet
    # train --data photos/ --recipe short` trained and evaluated photos at 32 px before
    img_size=None,
    eval_size=None,
)

PRESETS: dict[str, Recipe] = {r.name: r for r in (PAPER_V1, PAPER_V2, FINETUNE, FINETUNE_PAPER, QUICK,
                                                  SHORT)}
DEFAULT_RECIPE = "quick"


def get_recipe(name: str) -> Recipe:
    if name not in PRESETS:
        raise UserError(f"unknown recipe {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]
