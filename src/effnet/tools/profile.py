"""Parameters, multiply-accumulates, memory and speed of a model.

`count_params` and `count_macs` run on the meta device, so even EfficientNet-L2 (480M parameters,
476 GMACs at 800 px) is counted in about a second without allocating a byte of weights. MACs follow
SPEC C.8: convolutions (SE convs included, at their 1x1 input) and the classifier's matmul; BN,
activations, pooling, the SE gating multiply, residual adds and biases are not counted. That is
exactly what `torch.utils.flop_counter.FlopCounterMode` counts as FLOPs (2 per MAC), so
`count_macs` is its total halved; it reproduces every C.8 total to the MAC.
"""

from __future__ import annotations

import contextlib
import copy
import statistics
import time
import weakref
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode

from ..arch.scaling import MAX_RESOLUTION
from ..arch.spec import NetSpec
from ..errors import UserError


def _as_module(model_or_spec, num_classes: int = 1000, in_chans: int = 3) -> nn.Module:
    """A module as given, or a name / spec built on the meta device (no memory, no init cost)."""
    if isinstance(model_or_spec, nn.Module):
        return model_or_spec
    from ..models import make_model

    if not isinstance(model_or_spec, (str, NetSpec)):
        raise TypeError(f"expected a model, a NetSpec or a model name, got {type(model_or_spec).__name__}")
    with torch.device("meta"):
        return make_model(model_or_spec, num_classes=num_classes, in_chans=in_chans)


def count_params(model_or_spec, num_classes: int = 1000, in_chans: int = 3) -> int:
    """Trainable parameters of a model, a `NetSpec` or a model name (the last two built on meta)."""
    model = _as_module(model_or_spec, num_classes, in_chans)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _hw(size) -> tuple[int, int]:
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    if h < 1 or w < 1:
        raise UserError(f"image size must be positive, got {size}")
    if max(h, w) > MAX_RESOLUTION:
        raise UserError(f"image size {max(h, w)} is beyond the {MAX_RESOLUTION} px this tool handles")
    return int(h), int(w)


def count_macs(model, size, in_chans: int | None = None) -> int:
    """Multiply-accumulates of one forward pass of one `size` x `size` image (SPEC C.8 counting).

    `model` may be a module, a `NetSpec` or a model name; `size` an int or (height, width).
    `in_chans` defaults to the model's own. A module's weights are swapped for meta tensors for
    the count, so a model of any size costs no memory and no arithmetic.
    """
    h, w = _hw(size)
    module = _as_module(model, in_chans=in_chans or 3)
    c = in_chans or getattr(module, "in_chans", 3)
    was_training = module.training
    module.eval()
    try:
        state = {k: torch.empty_like(v, device="meta")
                 for k, v in [*module.named_parameters(), *module.named_buffers()]}
        x = torch.empty(1, c, h, w, device="meta")
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            torch.func.functional_call(module, state, (x,), strict=False)
    finally:
        module.train(was_training)
    return counter.get_total_flops() // 2


class _LiveBytes(TorchDispatchMode):
    """Peak bytes of tensors created while active and still alive, as a caching-free allocator
    would report them. Storages that existed before (weights, the input) are not counted; each
    new storage is counted once (views and in-place results share it) and released when Python
    frees it (storages keep their Python object, so a weakref callback marks the free)."""

    def __init__(self, existing: list[torch.Tensor]):
        super().__init__()
        self.live = self.peak = 0
        self._refs: dict[int, weakref.ref] = {}
        for t in existing:
            st = t.untyped_storage()
            self._refs[id(st)] = weakref.ref(st, partial(self._release, id(st), 0))

    def _release(self, key: int, nbytes: int, _ref) -> None:
        self._refs.pop(key, None)
        self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                st = t.untyped_storage()
                if id(st) not in self._refs:
                    n = st.nbytes()
                    self._refs[id(st)] = weakref.ref(st, partial(self._release, id(st), n))
                    self.live += n
                    self.peak = max(self.peak, self.live)
        return out


@contextlib.contextmanager
def _saved_bytes(counter: dict, exclude: set[int]):
    """Bytes of the distinct storages autograd saves for backward (the activations proper)."""
    seen: set[int] = set(exclude)

    def pack(t: torch.Tensor) -> torch.Tensor:
        st = t.untyped_storage()
        if st.data_ptr() not in seen:
            seen.add(st.data_ptr())
            counter["saved"] += st.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield


def _loss(out: torch.Tensor) -> torch.Tensor:
    if out.dim() == 2 and out.shape[1] > 1:
        target = torch.randint(0, out.shape[1], (out.shape[0],), device=out.device)
        return F.cross_entropy(out.float(), target)
    return out.float().mean()


def _median_seconds(fn: Callable[[], None], steps: int, warmup: int, sync: Callable[[], None]) -> float:
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def resolve_amp(amp_dtype) -> torch.dtype | None:
    if amp_dtype is None or isinstance(amp_dtype, torch.dtype):
        return amp_dtype
    from ..devices import amp_dtype as named

    return named(str(amp_dtype))


def _check_fits(dev: torch.device, input_bytes: int) -> None:
    """Refuse a batch whose training step cannot fit before trying it (an EfficientNet keeps far
    more than 10x its input for backward; the OOM killer gives no error line)."""
    if dev.type == "cuda":
        total = torch.cuda.mem_get_info(dev)[1]
    else:
        import os

        try:
            total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return
    if 10 * input_bytes > total:
        raise UserError(f"a batch of {input_bytes / 2**30:.1f} GiB of input needs more than the "
                        f"{total / 2**30:.0f} GiB of memory on {dev}; lower --batch or --size")


def profile(model: nn.Module | str, size, batch: int, device: str = "cpu", channels_last: bool = False,
            amp_dtype=None, steps: int = 10, warmup: int = 3) -> dict:
    """Parameters, GMACs, memory and speed of `model` on `batch` images of `size` x `size`.

    Memory (bytes above the weights and the input, one forward + backward in train mode):
      * `peak_bytes`: on CUDA `torch.cuda.max_memory_allocated` minus what was allocated before
        the step; on CPU the peak of live tensors created during the step, tracked op by op with a
        TorchDispatchMode (activations, temporaries and gradients; not the allocator's caching
        or a kernel's private scratch).
      * `saved_bytes`: the distinct tensors autograd keeps for backward (saved-tensor hooks),
        the part that grows with batch and resolution.
    Time: median of `steps` runs after `warmup`, synchronising CUDA; `forward_ms` is inference
    (eval, no grad), `train_step_ms` is forward + cross-entropy + backward + SGD step. The model
    is moved to `device` (and channels_last if asked); its weights and BN statistics are left as
    they were (the train steps run on a copy). `steps=0` skips the timing.
    """
    if batch < 1:
        raise UserError(f"batch must be >= 1, got {batch}")
    if isinstance(model, str):
        from ..models import create_model

        model = create_model(model)
    h, w = _hw(size)
    amp = resolve_amp(amp_dtype)
    from ..devices import pick_device

    dev = pick_device(device)
    in_chans = getattr(model, "in_chans", 3)
    _check_fits(dev, batch * in_chans * h * w * 4)
    result = {"params": count_params(model), "macs": count_macs(model, (h, w), in_chans)}
    result["gmacs"] = result["macs"] / 1e9
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(dev, memory_format=fmt)
    x = torch.randn(batch, in_chans, h, w, device=dev).contiguous(memory_format=fmt)
    autocast = (lambda: torch.autocast(dev.type, dtype=amp)) if amp else contextlib.nullcontext
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    # train-mode steps run on a copy so the caller's weights and BN statistics stay untouched
    trainee = copy.deepcopy(model).train()
    for p in trainee.parameters():
        p.grad = None
    saved = {"saved": 0}
    frozen = [*trainee.parameters(), *trainee.buffers(), x]
    if dev.type == "cuda":
        sync()
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)
        with _saved_bytes(saved, {t.untyped_storage().data_ptr() for t in frozen}), autocast():
            loss = _loss(trainee(x))
        loss.backward()
        sync()
        peak = torch.cuda.max_memory_allocated(dev) - base
    else:
        tracker = _LiveBytes(frozen)
        with tracker:
            with _saved_bytes(saved, {t.untyped_storage().data_ptr() for t in frozen}), autocast():
                loss = _loss(trainee(x))
            loss.backward()
        peak = tracker.peak
    del loss
    result.update(peak_bytes=int(peak), saved_bytes=int(saved["saved"]),
                  memory_method="cuda max_memory_allocated" if dev.type == "cuda" else "live-tensor tracker")

    if steps > 0:
        opt = torch.optim.SGD(trainee.parameters(), lr=1e-4, momentum=0.9)

        def train_step() -> None:
            opt.zero_grad(set_to_none=True)
            with autocast():
                out = trainee(x)
            _loss(out).backward()
            opt.step()

        was_training = model.training
        model.eval()

        def forward() -> None:
            with torch.inference_mode(), autocast():
                model(x)

        try:
            fwd = _median_seconds(forward, steps, warmup, sync)
        finally:
            model.train(was_training)
        step = _median_seconds(train_step, steps, warmup, sync)
        result.update(forward_ms=fwd * 1e3, train_step_ms=step * 1e3,
                      forward_img_s=batch / fwd, train_img_s=batch / step)
    result.update(size=(h, w), batch=batch, device=str(dev), channels_last=channels_last,
                  amp_dtype=str(amp).replace("torch.", "") if amp else None, steps=steps)
    return result


def format_profile(r: dict) -> str:
    """A few aligned lines for the CLI."""
    mib = 2**20
    lines = [
        f"params          {r['params']:,}",
        f"GMACs / image   {r['gmacs']:.3f}  at {r['size'][0]}x{r['size'][1]}",
        f"peak memory     {r['peak_bytes'] / mib:,.1f} MiB  (fwd+bwd, batch {r['batch']}, {r['memory_method']})",
        f"saved for bwd   {r['saved_bytes'] / mib:,.1f} MiB",
    ]
    if "forward_ms" in r:
        lines += [
            f"forward         {r['forward_ms']:.2f} ms  ({r['forward_img_s']:.1f} img/s)",
            f"train step      {r['train_step_ms']:.2f} ms  ({r['train_img_s']:.1f} img/s)",
        ]
    setting = f"{r['device']}, {'channels_last' if r['channels_last'] else 'NCHW'}, {r['amp_dtype'] or 'fp32'}"
    return "\n".join(lines + [f"setting         {setting}"])
