"""Taps: every probed map, whatever its layout or origin, seen as a channel-first map [B, C, h, w] at one module.

``tapped(model, probes, names)`` routes each named probe's map through an ``nn.Identity`` of its own (its *tap*)
while the model runs: a module output through a forward hook, a module input through a forward pre-hook, a
functional call's input (``call:adaptive_avg_pool2d#0``) through a ``TorchFunctionMode``. The tap receives the map
in channel-first form — a channel-last map permuted, a token map's patch tokens reshaped to their grid (class and
register tokens left out, and put back unchanged) — and the model goes on with the same values, so that

- forward hooks on a tap read the map (extraction statistics, NAP peaks, the Local Background fine-tune), and
- captum's layer attributions on a tap work on any family (Grad-CAM on ViT tokens and Swin's channel-last maps).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from .probes import Probe, Probes


def to_channel_first(value: torch.Tensor, probe: Probe) -> torch.Tensor:
    """A probe's map as [B, C, h, w]: channel-last permuted; patch tokens reshaped to their (square) grid, or to
    [B, C, T, 1] when they do not form one."""
    if probe.layout == "hwc":
        return value.permute(0, 3, 1, 2)
    if probe.layout == "tokens":
        patches = value[:, probe.prefix_tokens :, :].transpose(1, 2)
        count = patches.shape[-1]
        side = math.isqrt(count)
        grid = (side, side) if side * side == count else (count, 1)
        return patches.reshape(*patches.shape[:2], *grid)
    return value


def from_channel_first(
    mapped: torch.Tensor, original: torch.Tensor, probe: Probe
) -> torch.Tensor:
    """The inverse of ``to_channel_first`` (the prefix tokens taken from ``original``)."""
    if probe.layout == "hwc":
        return mapped.permute(0, 2, 3, 1)
    if probe.layout == "tokens":
        patches = mapped.flatten(2).transpose(1, 2)
        return torch.cat([original[:, : probe.prefix_tokens, :], patches], dim=1)
    return mapped


def _through(tap: nn.Module, value: torch.Tensor, probe: Probe) -> torch.Tensor:
    if probe.layout == "chw":
        return tap(value)
    return from_channel_first(tap(to_channel_first(value, probe)), value, probe)


class _CallTap(TorchFunctionMode):
    """Routes the input of the ``k``-th call of a torch function through a tap (once per forward pass)."""

    def __init__(self, taps: dict[tuple[str, int], tuple[nn.Module, Probe]]):
        super().__init__()
        self.taps = taps
        self.counts: dict[str, int] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if args and any(name == key[0] for key in self.taps):
            index = self.counts.get(name, 0)
            self.counts[name] = index + 1
            found = self.taps.get((name, index))
            if found is not None and torch.is_tensor(args[0]):
                tap, probe = found
                args = (_through(tap, args[0], probe), *args[1:])
        return func(*args, **kwargs)


# The app shares one model between sessions, each in its own thread, and a hook sees every thread's forward pass:
# a Grad-CAM in one session then differentiated another session's tensors ("The differentiated Tensor … appears to
# not have been used in the graph", seen with 10 students). One tapped pass at a time per process.
_HOOKED_PASSES = threading.RLock()


@contextmanager
def tapped(
    model: nn.Module, probes: Probes, names: Sequence[str] | None = None
) -> Iterator[dict[str, nn.Module]]:
    """While inside, each named probe's map (all probes by default) passes through its tap: ``{name: tap}``.

    A probe read through a function call needs the mode active during the forward pass: run the model inside
    ``with tapped(...)`` (the mode is entered and left with it, and counts calls from zero at each forward).
    Tapped passes are serialised across threads (``_HOOKED_PASSES``)."""
    with _HOOKED_PASSES, _tapped(model, probes, names) as taps:
        yield taps


@contextmanager
def _tapped(
    model: nn.Module, probes: Probes, names: Sequence[str] | None
) -> Iterator[dict[str, nn.Module]]:
    taps = {name: nn.Identity() for name in (names or probes.blocks)}
    handles, call_taps = [], {}
    for name, tap in taps.items():
        probe = probes.probe(name)
        module = model.get_submodule(probe.module) if probe.where != "call" else None
        if probe.where == "output":

            def output_hook(module, args, output, tap=tap, probe=probe):
                if torch.is_tensor(output):
                    return _through(tap, output, probe)
                first = _through(tap, output[0], probe)
                return (first, *output[1:])

            handles.append(module.register_forward_hook(output_hook))
        elif probe.where == "input":

            def input_hook(module, args, tap=tap, probe=probe):
                return (_through(tap, args[0], probe), *args[1:])

            handles.append(module.register_forward_pre_hook(input_hook))
        else:
            function, index = probe.call.split("#")
            call_taps[(function, int(index))] = (tap, probe)
    if call_taps:
        handles.append(
            model.register_forward_pre_hook(lambda module, args: mode.counts.clear())
        )
    mode = _CallTap(call_taps)
    try:
        with ExitStack() as stack:
            if call_taps:
                stack.enter_context(mode)
            yield taps
    finally:
        for handle in handles:
            handle.remove()
