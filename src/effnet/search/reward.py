"""The search objectives, and the measurement of training speed they need.

* EfficientNetV2 (P2 section 3.3, SPEC E.6): reward = A * S^w * P^v with A the accuracy, S the
  normalised training step time, P the parameter count; w = -0.07, v = -0.05.
* EfficientNet-B0 / MnasNet (P1 section 4, SPEC E.5): reward = ACC * (FLOPS / T)^w, w = -0.07.

effnet normalises both S and P by the backbone's (its step time measured once per study on the
worker that created it, its parameter count exact), so the backbone's own reward is its accuracy
and the reward does not depend on units. The paper states P as "parameter size" without
normalisation; a constant factor P0^v multiplies every reward alike and changes no ranking.
A is val top-1 as a fraction (0..1).
"""

from __future__ import annotations

from dataclasses import dataclass

W_TIME = -0.07
V_PARAMS = -0.05
W_FLOPS = -0.07
OBJECTIVES = ("v2", "mnas")


def v2_reward(accuracy: float, step_time: float, params: float, w: float = W_TIME,
              v: float = V_PARAMS) -> float:
    """A * S^w * P^v (S, P normalised by the backbone's)."""
    if step_time <= 0 or params <= 0:
        raise ValueError(f"step time and params must be > 0 (got {step_time}, {params})")
    return accuracy * step_time**w * params**v


def mnas_reward(accuracy: float, flops: float, target: float, w: float = W_FLOPS) -> float:
    """ACC * (FLOPS / T)^w, the V1 / MnasNet objective with target T."""
    if flops <= 0 or target <= 0:
        raise ValueError(f"FLOPs and target must be > 0 (got {flops}, {target})")
    return accuracy * (flops / target) ** w


@dataclass(frozen=True)
class Objective:
    kind: str = "v2"  # v2: A * S^w * P^v; mnas: ACC * (FLOPs / T)^w with T the backbone's FLOPs
    w: float = W_TIME
    v: float = V_PARAMS
    w_flops: float = W_FLOPS

    def __post_init__(self) -> None:
        from ..errors import UserError

        if self.kind not in OBJECTIVES:
            raise UserError(f"unknown objective {self.kind!r}; choose one of {', '.join(OBJECTIVES)}")

    def rewards(self, top1: float, step_s: float, params: int, macs: int, base: dict) -> dict:
        """Both rewards of one candidate; `base` holds the backbone's step_s, params, macs."""
        acc = top1 / 100.0
        s, p = step_s / base["step_s"], params / base["params"]
        out = {"S": s, "P": p, "reward_v2": v2_reward(acc, s, p, self.w, self.v),
               "reward_mnas": mnas_reward(acc, macs, base["macs"], self.w_flops)}
        out["reward"] = out["reward_v2"] if self.kind == "v2" else out["reward_mnas"]
        return out


def step_time(spec, size: int, batch: int, num_classes: int, steps: int = 7, warmup: int = 2,
              seed: int = 0) -> dict:
    """Median seconds of one training step (forward, cross-entropy, backward, SGD update) of
    `spec` on `batch` random images of `size` px, on the CPU with the current thread count; plus
    exact params and MACs. The same batch and size for every candidate of a study."""
    import torch

    from ..models import build
    from ..tools.profile import profile

    torch.manual_seed(seed)
    model = build(spec, num_classes=num_classes)
    r = profile(model, size, batch, steps=steps, warmup=warmup)
    return {"step_s": r["train_step_ms"] / 1e3, "params": r["params"], "macs": r["macs"]}
