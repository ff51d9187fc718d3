"""Where to look inside a model: the probed activation maps, the linear head and the penultimate feature.

One dry forward pass (``trace``) records every module call and every torch function call of the model on an
example input. From it:

- the **head** is the last ``nn.Linear`` whose output is the model's output (the logits); the penultimate feature is
  its input (ViT: the class token after the final norm);
- the **pre-pool map** is the map the global pool reads (NAP's "before global pooling"): the input of the last
  global spatial or token reduction before the head, whether it is a module (``nn.AdaptiveAvgPool2d``, timm's
  ``SelectAdaptivePool2d``) or a functional call (torchvision DenseNet's ``F.adaptive_avg_pool2d(F.relu(norm5))``,
  the DICE/ReAct DenseNet-BC's ``F.avg_pool2d``, ViT's ``x[:, 0]``). It is read as the output of the module that
  produces it, the input of the pooling module, or, when only a function call produces it, that call's input;
- the **family defaults** (at most ``MAX_DEFAULT`` probes, the pre-pool map always among them): every residual block
  (ResNet); the NAP paper's four DenseNet positions (after the first convolution, before the pooling of transition
  blocks 1 and 2, before global pooling); before each max-pool (VGG); each encoder block's tokens and the final norm
  (ViT); each stage's output (MobileNet, EfficientNet, RegNet, ConvNeXt, Swin, timm models' ``feature_info``).

Maps come in three layouts: ``chw`` ([B, C, H, W]), ``hwc`` ([B, H, W, C]: Swin, timm's NHWC stages) and ``tokens``
([B, T, C]: statistics over the patch tokens only, the ``prefix_tokens`` class and register tokens left out).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from itertools import count

import numpy as np
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ..errors import OODLabError

MAX_DEFAULT = 24
RESIDUAL_BLOCK_TYPES = ("BasicBlock", "Bottleneck")
# Global pools: a max-pool with a fixed kernel is a downsampling step (VGG), never the global pool, even where a
# small input makes its output 1×1.
SPATIAL_POOLS = {"adaptive_avg_pool2d", "adaptive_max_pool2d", "avg_pool2d"}
REDUCTIONS = {"mean", "amax", "sum", "max", "logsumexp", "nanmean"}
POOL_ALIASES = ("pool", "pre-pool")


@dataclass(frozen=True)
class Probe:
    """One probed map: where it is read and how its values are laid out."""

    name: str  # its name in the cache: a module path, ``input:<module>`` or ``call:<function>#<k>``
    module: str  # the module whose output (or input) it is; for a call, the module that feeds the call
    where: str = "output"  # "output", "input" or "call"
    layout: str = "chw"  # "chw", "hwc" or "tokens"
    shape: tuple[
        int, ...
    ] = ()  # one sample's map as read: (C, H, W), (H, W, C) or (T, C)
    prefix_tokens: int = 0
    call: str = ""  # for where="call": the function's name and its index among the calls of that name
    pre_pool: bool = False

    @property
    def channels(self) -> int:
        if not self.shape:
            return 0
        return self.shape[0] if self.layout == "chw" else self.shape[-1]

    @property
    def positions(self) -> int:
        """How many spatial positions (or patch tokens) each channel's statistics reduce over."""
        if not self.shape:
            return 0
        if self.layout == "tokens":
            return self.shape[0] - self.prefix_tokens
        return math.prod(self.shape[1:] if self.layout == "chw" else self.shape[:-1])

    @property
    def key(self) -> str:
        """What identifies the probe in a cache key (just the name for a module output in chw)."""
        if self.where == "output" and self.layout == "chw":
            return self.name
        return f"{self.name}|{self.layout}|{self.prefix_tokens}"


@dataclass(frozen=True)
class Probes:
    """A model's probed maps (in call order), its head and what rule chose the probes."""

    blocks: tuple[str, ...]
    head: str
    kind: str
    details: tuple[Probe, ...] = ()
    pre_pool: str | None = None
    classes: int = 0
    penultimate: int = 0

    def probe(self, name: str) -> Probe:
        """The record of probe ``name`` (a plain module-output probe when the record was not kept)."""
        for probe in self.details:
            if probe.name == name:
                return probe
        if name not in self.blocks:
            raise OODLabError(f"'{name}' is not a probe of this model")
        return Probe(name, name)

    def class_map(self) -> str | None:
        """The map whose channels the head weighs (the pre-pool map, else the last probe with as many channels as
        the penultimate feature): where class activation maps are read (Local Background). ``None`` if none."""
        candidates = [self.pre_pool] if self.pre_pool else []
        candidates += [name for name in reversed(self.blocks) if name != self.pre_pool]
        for name in candidates:
            if self.probe(name).channels == self.penultimate or not self.details:
                return name
        return None

    @property
    def keys(self) -> list[str]:
        return [self.probe(name).key for name in self.blocks]

    def table(self) -> list[dict]:
        """One row per probe, for ``python -m ood_core probes`` and the Setup page."""
        return [
            {
                "probe": p.name,
                "reads": {
                    "output": f"output of {p.module}",
                    "input": f"input of {p.module}",
                    "call": f"input of {p.call.split('#')[0]} (after {p.module})",
                }[p.where],
                "layout": p.layout
                + (f" ({p.prefix_tokens} prefix)" if p.prefix_tokens else ""),
                "shape": "×".join(map(str, p.shape)),
                "channels": p.channels,
                "positions": p.positions,
                "pre-pool": "✓" if p.pre_pool else "",
            }
            for p in (self.probe(name) for name in self.blocks)
        ]


# --- the dry pass -----------------------------------------------------------------------------------------------------


def _first_tensor(value) -> torch.Tensor | None:
    if torch.is_tensor(value):
        return value
    if isinstance(value, (tuple, list)):
        return next((v for v in value if torch.is_tensor(v)), None)
    return None


@dataclass
class _Event:
    order: int
    kind: str  # "module" or "call"
    name: str  # module path, or function name
    inputs: tuple[int, ...]  # ids of tensor inputs
    input_shape: tuple[int, ...]
    output: int | None
    output_shape: tuple[int, ...]
    index: int = 0  # calls: index among calls of the same name
    module_type: str = ""
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)


class _CallRecorder(TorchFunctionMode):
    def __init__(self, trace: Trace):
        super().__init__()
        self.trace = trace
        self.counts: dict[str, int] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        name = getattr(func, "__name__", "")
        if name in ("__get__", "__set__") or not name:
            return result
        first = _first_tensor(args[0] if args else None)
        out = _first_tensor(result)
        if first is not None and out is not None:
            index = self.counts.get(name, 0)
            self.counts[name] = index + 1
            self.trace.add(
                "call",
                name,
                (first,),
                out,
                index=index,
                args=tuple(a for a in args[1:] if not torch.is_tensor(a)),
                kwargs={k: v for k, v in kwargs.items() if not torch.is_tensor(v)},
            )
        return result


class Trace:
    """Every module call and torch function call of one forward pass, in order (tensors kept alive by the trace,
    so that ``id()`` identifies them)."""

    def __init__(self):
        self.events: list[_Event] = []
        self.keep: list[torch.Tensor] = []
        self.calls_per_module: dict[str, int] = {}
        self.output: int | None = None
        self._order = count()

    def add(
        self,
        kind: str,
        name: str,
        inputs: Sequence[torch.Tensor],
        output: torch.Tensor | None,
        **extra,
    ) -> None:
        self.keep.extend([*inputs, *([output] if output is not None else [])])
        self.events.append(
            _Event(
                next(self._order),
                kind,
                name,
                tuple(id(t) for t in inputs),
                tuple(inputs[0].shape) if inputs else (),
                None if output is None else id(output),
                () if output is None else tuple(output.shape),
                **extra,
            )
        )

    def module_events(self) -> list[_Event]:
        return [e for e in self.events if e.kind == "module"]

    def once(self, name: str) -> bool:
        return self.calls_per_module.get(name, 0) == 1


def trace(model: nn.Module, example: torch.Tensor) -> Trace:
    """Run ``example`` through ``model`` once, recording every module and function call (``Trace``)."""
    recorded = Trace()
    handles = []
    for name, module in model.named_modules():
        if not name:
            continue

        def hook(module, args, output, name=name):
            recorded.calls_per_module[name] = recorded.calls_per_module.get(name, 0) + 1
            first = _first_tensor(args)
            out = _first_tensor(output)
            recorded.add(
                "module",
                name,
                (first,) if first is not None else (),
                out,
                module_type=type(module).__name__,
            )

        handles.append(module.register_forward_hook(hook))
    try:
        with torch.inference_mode(), _CallRecorder(recorded):
            result = model.eval()(example)
    finally:
        for handle in handles:
            handle.remove()
    out = _first_tensor(result)
    recorded.output = None if out is None else id(out)
    return recorded


# --- reading the trace ------------------------------------------------------------------------------------------------


def _dims(event: _Event) -> set[int] | None:
    dim = event.kwargs.get("dim", event.args[0] if event.args else None)
    if dim is None:
        return None
    dims = {dim} if isinstance(dim, int) else set(dim)
    rank = len(event.input_shape)
    return {d % rank for d in dims}


def _pool_layout(event: _Event) -> str | None:
    """The layout of the map a call pools globally, or ``None`` if the call is no global pool."""
    shape, out = event.input_shape, event.output_shape
    if event.kind != "call" or len(shape) not in (3, 4):
        return None
    if event.name in SPATIAL_POOLS and len(shape) == 4 and out[-2:] == (1, 1):
        return "chw"
    if event.name in REDUCTIONS:
        dims = _dims(event)
        if len(shape) == 4 and dims == {2, 3}:
            return "chw"
        if len(shape) == 4 and dims == {1, 2}:
            return "hwc"
        if len(shape) == 3 and dims == {1}:
            return "tokens"
    if event.name == "__getitem__" and len(shape) == 3 and out == (shape[0], shape[2]):
        return "tokens"
    return None


def _layout_of(shape: tuple[int, ...]) -> str:
    """A map's layout from its shape (batch first): tokens for 3-D, channel-last when the last two dims are not the
    square grid but the middle two are."""
    if len(shape) == 3:
        return "tokens"
    _, a, b, c = shape
    if a == b and b != c:
        return "hwc"
    return "chw"


def _prefix_tokens(model: nn.Module, tokens: int) -> int:
    """Class and register tokens ahead of the patch tokens: timm's ``num_prefix_tokens``, torchvision ViT's class
    token, else what is left over the largest square grid."""
    known = getattr(model, "num_prefix_tokens", None)
    if isinstance(known, int):
        return known
    if isinstance(getattr(model, "class_token", None), torch.Tensor):
        return 1
    extra = tokens - math.isqrt(tokens) ** 2
    return extra if extra <= 16 else 0


def _head(model: nn.Module, recorded: Trace) -> _Event:
    linears = [
        e
        for e in recorded.module_events()
        if isinstance(model.get_submodule(e.name), nn.Linear)
    ]
    if not linears:
        raise OODLabError(
            f"{type(model).__name__} has no nn.Linear head; OOD Lab needs a classifier ending in a linear layer"
        )
    producing = [e for e in linears if e.output == recorded.output]
    return (producing or linears)[-1]


def _producers(recorded: Trace, tensor: int) -> list[_Event]:
    """Module events whose output is ``tensor``, innermost first."""
    return [e for e in recorded.module_events() if e.output == tensor]


@dataclass(frozen=True)
class _Found:
    probe: Probe
    tensor: int
    order: int = 1 << 60  # when the map was pooled: default probes come before it


def _map_probe(
    model: nn.Module, recorded: Trace, event: _Event, layout: str | None = None
) -> _Found:
    """An output probe of a module event, its layout from the shape unless given."""
    shape = event.output_shape
    layout = layout or _layout_of(shape)
    prefix = _prefix_tokens(model, shape[1]) if layout == "tokens" else 0
    probe = Probe(event.name, event.name, "output", layout, shape[1:], prefix)
    return _Found(probe, event.output)


def _pre_pool(model: nn.Module, recorded: Trace, head: _Event) -> _Found | None:
    """The map the global pool reads (see the module docstring)."""
    before = [e for e in recorded.events if e.order < head.order]
    pools = [(e, _pool_layout(e)) for e in before]
    pools = [(e, layout) for e, layout in pools if layout]
    if pools:
        pool, layout = pools[-1]
        tensor = pool.inputs[0]
    else:  # no global pool (VGG): the map the classifier flattens
        flattens = [
            e
            for e in before
            if e.kind == "call"
            and e.name in ("flatten", "view", "reshape")
            and len(e.input_shape) == 4
        ]
        if not flattens:
            return None
        pool, layout, tensor = flattens[-1], "chw", flattens[-1].inputs[0]
    shape = pool.input_shape
    prefix = _prefix_tokens(model, shape[1]) if layout == "tokens" else 0
    once = [e for e in _producers(recorded, tensor) if recorded.once(e.name)]
    if once:
        event = once[0]
        probe = Probe(
            event.name, event.name, "output", layout, shape[1:], prefix, pre_pool=True
        )
        return _Found(probe, tensor, pool.order)
    consumers = [  # the pooling module itself, when a function call made its input
        e
        for e in recorded.module_events()
        if e.inputs[:1] == (tensor,) and recorded.once(e.name) and e.order > pool.order
    ]
    if consumers:
        name = consumers[0].name
        probe = Probe(
            f"input:{name}", name, "input", layout, shape[1:], prefix, pre_pool=True
        )
        return _Found(probe, tensor, pool.order)
    feeder = _feeding_module(recorded, tensor)
    call = f"{pool.name}#{pool.index}"
    probe = Probe(
        f"call:{call}", feeder, "call", layout, shape[1:], prefix, call, pre_pool=True
    )
    return _Found(probe, tensor, pool.order)


def _feeding_module(recorded: Trace, tensor: int, steps: int = 6) -> str:
    """The module whose output reaches ``tensor`` through function calls only (DenseNet: norm5 → relu → pool)."""
    for _ in range(steps):
        producers = _producers(recorded, tensor)
        if producers:
            return producers[0].name
        calls = [e for e in recorded.events if e.kind == "call" and e.output == tensor]
        if not calls or not calls[-1].inputs:
            break
        tensor = calls[-1].inputs[0]
    return ""


def _map_events(recorded: Trace, before: int = 1 << 60) -> list[_Event]:
    """Module calls made once, ending before ``before``, whose output is an activation map (3-D tokens or 4-D),
    in call order."""
    return [
        e
        for e in recorded.module_events()
        if recorded.once(e.name)
        and len(e.output_shape) in (3, 4)
        and e.output_shape[0] == 1
        and e.order < before
    ]


def _children(events: list[_Event], parent: str) -> list[_Event]:
    prefix = f"{parent}." if parent else ""
    return [
        e
        for e in events
        if e.name.startswith(prefix) and "." not in e.name[len(prefix) :]
    ]


def _grid(shape: tuple[int, ...]) -> tuple[int, ...]:
    layout = _layout_of(shape)
    if layout == "tokens":
        return (shape[1],)
    return shape[2:] if layout == "chw" else shape[1:3]


def _parents(events: list[_Event]) -> set[str]:
    return {e.name.rsplit(".", 1)[0] if "." in e.name else "" for e in events}


def _stage_outputs(events: list[_Event]) -> list[_Event]:
    """Each stage's output: in the container whose children span the most resolutions (a backbone's
    ``features`` / ``trunk_output``), the last child at each resolution."""
    best: list[_Event] = []
    best_score = (0, 0)
    for parent in _parents(events):
        children = _children(events, parent)
        score = (len({_grid(e.output_shape) for e in children}), len(children))
        if score > best_score:
            best, best_score = children, score
    if best_score[0] < 2:
        return []
    return [
        e
        for i, e in enumerate(best)
        if i == len(best) - 1
        or _grid(best[i + 1].output_shape) != _grid(e.output_shape)
    ]


def _densenet(model: nn.Module, recorded: Trace) -> list[_Event]:
    """After the first convolution, and before the pooling of transition blocks 1 and 2 (NAP, DenseNet)."""
    events = _map_events(recorded)
    convs = [e for e in events if isinstance(model.get_submodule(e.name), nn.Conv2d)]
    transitions = [
        e.name for e in recorded.module_events() if "Transition" in e.module_type
    ][:2]
    chosen = convs[:1]
    for transition in transitions:
        inside = [c for c in convs if c.name.startswith(f"{transition}.")]
        chosen += inside[-1:]
    return chosen


def _vgg(model: nn.Module, recorded: Trace) -> list[_Event]:
    """The map entering each max-pool (VGG)."""
    events = recorded.module_events()
    chosen = []
    for event in events:
        if isinstance(model.get_submodule(event.name), nn.MaxPool2d):
            feeding = [
                e
                for e in _producers(recorded, event.inputs[0])
                if recorded.once(e.name)
            ]
            chosen += feeding[:1]
    return chosen


def _timm_stages(model: nn.Module, events: list[_Event]) -> list[_Event]:
    info = getattr(model, "feature_info", None)
    try:
        names = [entry["module"] for entry in info]  # type: ignore[union-attr]
    except (TypeError, KeyError):
        return []
    by_name = {e.name: e for e in events}
    return [by_name[n] for n in names if n in by_name]


def _family(
    model: nn.Module, recorded: Trace, pre_pool: _Found | None
) -> tuple[str, list[_Event]]:
    """The family's default probes (module events) and the rule's description."""
    types = {e.module_type for e in recorded.module_events()}
    events = _map_events(recorded)
    if types & set(RESIDUAL_BLOCK_TYPES):
        return "residual blocks", [
            e for e in events if e.module_type in RESIDUAL_BLOCK_TYPES
        ]
    if any("Transition" in t for t in types) and any("Dense" in t for t in types):
        return "DenseNet: the NAP paper's four positions", _densenet(model, recorded)
    if type(model).__name__.upper().startswith("VGG"):
        return "VGG: before each max-pool", _vgg(model, recorded)
    before = _map_events(recorded, pre_pool.order if pre_pool else 1 << 60)
    if pre_pool is not None and pre_pool.probe.layout == "tokens":
        return "each encoder block's tokens and the final norm", _encoder_blocks(before)
    timm = _timm_stages(model, before)
    if timm:
        return "each stage's output (timm feature_info)", timm
    return "each stage's output", _stage_outputs(before)


def _encoder_blocks(events: list[_Event]) -> list[_Event]:
    """A transformer's encoder blocks: the container with the most children producing token maps of one shape."""
    best: list[_Event] = []
    for parent in _parents(events):
        children = [e for e in _children(events, parent) if len(e.output_shape) == 3]
        if len({e.output_shape for e in children}) == 1 and len(children) > len(best):
            best = children
    return best


def _spread(items: list, keep: int) -> list:
    """``keep`` items spread evenly over ``items`` (the last one always kept)."""
    if len(items) <= keep:
        return items
    picks = np.linspace(0, len(items) - 1, keep).round().astype(int)
    return [items[i] for i in sorted(set(picks.tolist()))]


def _with_pre_pool(
    model: nn.Module,
    recorded: Trace,
    chosen: list[_Event],
    pre_pool: _Found | None,
    keep_last: bool = False,
) -> list[Probe]:
    """One probe per map of ``chosen`` (the first module that outputs a tensor, or with ``keep_last`` the last:
    where in-place operations rewrite a tensor, as ``out += identity; relu_(out)`` in a ResNet block, only the last
    module's output holds the final values), the pre-pool probe marked or added."""
    found = [_map_probe(model, recorded, e) for e in chosen]
    unique: dict[int, Probe] = {}
    for item in found:
        if keep_last:
            unique.pop(item.tensor, None)
            unique[item.tensor] = item.probe
        else:
            unique.setdefault(item.tensor, item.probe)
    probes = list(unique.values())
    if pre_pool is None:
        return probes
    if (
        pre_pool.tensor in unique
    ):  # a default probe reads the same map: it is the pre-pool probe
        same = unique[pre_pool.tensor]
        marked = replace(
            same,
            pre_pool=True,
            layout=pre_pool.probe.layout,
            prefix_tokens=pre_pool.probe.prefix_tokens,
        )
        return [marked if p is same else p for p in probes]
    return [*probes, pre_pool.probe]


def _named(
    model: nn.Module, recorded: Trace, names: Sequence[str], pre_pool: _Found | None
) -> list[Probe]:
    """Probes named in the registry: module paths (their output), ``input:<module>``, or ``pool``."""
    probes = []
    for name in names:
        if name in POOL_ALIASES:
            if pre_pool is None:
                raise OODLabError("probe 'pool': this model has no global pool")
            probes.append(pre_pool.probe)
            continue
        module, where = name, "output"
        if name.startswith("input:"):
            module, where = name.removeprefix("input:"), "input"
        try:
            model.get_submodule(module)
        except AttributeError:
            raise OODLabError(
                f"probe '{name}': the model has no module '{module}'"
            ) from None
        events = [e for e in recorded.module_events() if e.name == module]
        if len(events) != 1:
            raise OODLabError(
                f"probe '{name}': module '{module}' runs {len(events)} times in a forward pass (it must run once)"
            )
        shape = events[0].input_shape if where == "input" else events[0].output_shape
        if len(shape) not in (3, 4):
            raise OODLabError(
                f"probe '{name}': its map has shape {list(shape)}; a probe reads a [B,C,H,W], [B,H,W,C] or [B,T,C] map"
            )
        layout = _layout_of(shape)
        prefix = _prefix_tokens(model, shape[1]) if layout == "tokens" else 0
        tensor = events[0].inputs[0] if where == "input" else events[0].output
        is_pool = pre_pool is not None and tensor == pre_pool.tensor
        probes.append(
            Probe(name, module, where, layout, shape[1:], prefix, pre_pool=is_pool)
        )
    return probes


def find_probes(
    model: nn.Module, example: torch.Tensor, choice: str | Sequence[str] = "default"
) -> Probes:
    """Find the probes of ``model`` by one dry forward pass on ``example`` ([1, C, H, W]).

    ``choice``: ``"default"`` (the family's probes, at most ``MAX_DEFAULT``), ``"all"`` (every map a module makes
    once) or a list of probe names (module paths, ``input:<module>``, ``pool``).
    """
    recorded = trace(model, example)
    head = _head(model, recorded)
    pre_pool = _pre_pool(model, recorded, head)
    if choice == "default":
        kind, chosen = _family(model, recorded, pre_pool)
        chosen = _spread(chosen, MAX_DEFAULT - (pre_pool is not None))
        probes = _with_pre_pool(model, recorded, chosen, pre_pool)
    elif choice == "all":
        kind = 'every map a module makes once (probes = "all")'
        probes = _with_pre_pool(
            model, recorded, _map_events(recorded), pre_pool, keep_last=True
        )
    else:
        kind = "as listed in the registry (probes = [...])"
        probes = _named(model, recorded, list(choice), pre_pool)
    if not probes:
        raise OODLabError(
            f"found no activation map to probe in {type(model).__name__} (no [B,C,H,W], [B,H,W,C] or [B,T,C] output "
            "before its head)"
        )
    probes.sort(key=lambda p: _order_of(recorded, p))
    head_module = model.get_submodule(head.name)
    return Probes(
        tuple(p.name for p in probes),
        head.name,
        kind,
        tuple(probes),
        next((p.name for p in probes if p.pre_pool), None),
        head_module.out_features,
        head_module.in_features,
    )


def _order_of(recorded: Trace, probe: Probe) -> int:
    if probe.where == "call":
        name, index = probe.call.split("#")
        return next(
            e.order
            for e in recorded.events
            if e.kind == "call" and e.name == name and e.index == int(index)
        )
    return next(e.order for e in recorded.module_events() if e.name == probe.module)


def linear_head(model: nn.Module, probes: Probes) -> tuple[np.ndarray, np.ndarray]:
    """The head's weight W [K,D] and bias b [K] as float32 arrays (b is zeros when the layer has no bias)."""
    head = model.get_submodule(probes.head)
    weight = head.weight.detach().float().cpu().numpy()
    bias = (
        head.bias.detach().float().cpu().numpy()
        if head.bias is not None
        else np.zeros(weight.shape[0], np.float32)
    )
    return weight, bias
