"""The boxes and wires of a neural circuit diagram, grouped from a recorded forward pass.

:func:`diagram` turns a :class:`~components.report.circuit_record.Trace` into what
:func:`~components.report.circuit.trace_circuit` returns; the module docstring there says how
calls are grouped into boxes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from components.report.circuit_record import Call, Trace

# Functions that only re-type or re-view a tensor: a plain wire when the shape stays the same.
_PASS_THROUGH = {
    "to", "float", "double", "half", "contiguous", "clone", "detach", "view", "reshape",
    "view_as", "reshape_as", "type_as", "flatten",
}  # fmt: skip
# Functions that only arrange a tensor's axes.
_RESHAPES = {
    "flatten", "unsqueeze", "squeeze", "getitem", "view", "reshape", "permute", "transpose",
}  # fmt: skip
_OPS_SHOWN = 4  # function names listed in a merged box's operation
FEW_BOXES = 4  # below this many boxes, expanding a module may add branches


@dataclass(eq=False)
class Node:
    """A module call or a torch function of the diagram, before grouping into boxes.

    Attributes:
        kind: ``input``, ``module`` or ``op``.
        call: the recorded call (None for the input).
        data_in: ``(node, tensor)`` for every input computed from the example batch.
        weights: ``(parameter names, tensor)`` for every input computed from the model's
            parameters and buffers (or constants) alone.
    """

    kind: str
    call: Call | None = None
    data_in: list[tuple[Node, torch.Tensor]] = field(default_factory=list)
    weights: list[tuple[frozenset[str], torch.Tensor]] = field(default_factory=list)


@dataclass(frozen=True)
class _Model:
    """What grouping needs to know of the model: its modules, which of them ran, its
    parameters by tensor, and the parameters ``model.prototypes`` is computed from."""

    modules: dict[str, nn.Module]
    called: frozenset[str]
    names: dict[int, str]
    params: dict[str, torch.Tensor]
    prototype_params: frozenset[str]

    @classmethod
    def of(cls, trace: Trace) -> _Model:
        model = trace.model
        named = {**dict(model.named_buffers()), **dict(model.named_parameters())}
        return cls(
            modules=dict(model.named_modules()),
            called=frozenset(c.name for c in trace.calls if c.module is not None),
            names={id(t): name for name, t in named.items()},
            params=dict(model.named_parameters()),
            prototype_params=prototype_parameters(model),
        )


def prototype_parameters(model: nn.Module) -> frozenset[str]:
    """The names of the parameters and buffers ``model.prototypes`` is computed from (none for a
    model without prototypes), found through the autograd graph of one evaluation."""
    try:
        with torch.enable_grad():
            prototypes = model.prototypes
    except (AttributeError, NotImplementedError):
        return frozenset()
    if not isinstance(prototypes, torch.Tensor):
        return frozenset()
    by_storage = {t.data_ptr(): name for name, t in model.named_buffers()}
    by_storage |= {p.data_ptr(): name for name, p in model.named_parameters()}
    return frozenset(by_storage[p] for p in _leaf_storages(prototypes) if p in by_storage)


def _leaf_storages(tensor: torch.Tensor) -> set[int]:
    if tensor.grad_fn is None:
        return {tensor.data_ptr()}
    found, seen, stack = set(), set(), [tensor.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        if hasattr(fn, "variable"):
            found.add(fn.variable.data_ptr())
        stack.extend(next_fn for next_fn, _ in fn.next_functions)
    return found


def diagram(trace: Trace, *, max_boxes: int) -> dict:
    """The diagram of ``trace`` (see :func:`components.report.circuit.trace_circuit`), its
    modules expanded while it keeps within ``max_boxes`` boxes."""
    info = _Model.of(trace)
    cut = _frontier(info, "")
    boxes = _boxes(trace, info, cut)
    blocked: set[str] = set()
    while candidates := [p for p in cut if p not in blocked and _expandable(info, p)]:
        path = max(candidates, key=lambda p: _param_count(info.modules[p]))
        trial = _expand(cut, path, _frontier(info, path))
        trial_boxes = _boxes(trace, info, trial)
        if _readable(trace, boxes, trial_boxes, path, max_boxes):
            cut, boxes = trial, trial_boxes
        else:
            blocked.add(path)
    return _as_dict(trace, info, boxes)


def _readable(trace: Trace, boxes: list[Box], trial: list[Box], path: str, limit: int) -> bool:
    """Whether expanding ``path`` (``boxes`` -> ``trial``) keeps the diagram readable: within
    ``limit`` boxes (input and output are none), no new branches or skip wires once the diagram
    has ``FEW_BOXES`` (a residual block or a DARTS cell stays one box), and no loose function
    reading the module's own parameters (its code, not its children, uses them)."""
    if len(trial) - 2 > limit or _uses_own_params(trial, path):
        return False
    few = len(boxes) - 2 < FEW_BOXES
    return few or _branching(trace, trial) <= _branching(trace, boxes)


def _branching(trace: Trace, boxes: list[Box]) -> int:
    """Wires beyond a chain's: ``wires - boxes`` (0 for a chain from input to logits)."""
    owner = {n: i for i, box in enumerate(boxes) for n in box.nodes if box.kind != "output"}
    return len(_wires(trace, boxes, owner)) - len(boxes)


def _uses_own_params(boxes: list[Box], path: str) -> bool:
    return any(
        name.startswith(f"{path}.")
        for box in boxes
        if box.path is None
        for node in box.nodes
        for names, _ in node.weights
        for name in names
    )


# --- which modules are boxes --------------------------------------------------------------------


def _frontier(info: _Model, path: str) -> list[str]:
    """The called modules right below ``path`` (through containers that were never called,
    such as a ``ModuleList``)."""
    found = []
    for name, _ in info.modules[path].named_children():
        child = f"{path}.{name}" if path else name
        found += [child] if child in info.called else _frontier(info, child)
    return found


def _repeat(info: _Model, path: str) -> int:
    """``k`` when the module is ``k >= 2`` called blocks of one class (drawn "Block ×k"), else 1."""
    children = _frontier(info, path)
    kinds = {type(info.modules[c]) for c in children}
    return len(children) if len(children) >= 2 and len(kinds) == 1 else 1


def _expandable(info: _Model, path: str) -> bool:
    return bool(_frontier(info, path)) and _repeat(info, path) == 1


def _expand(cut: list[str], path: str, children: list[str]) -> list[str]:
    at = cut.index(path)
    return [*cut[:at], *children, *cut[at + 1 :]]


def _param_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# --- nodes and wires ----------------------------------------------------------------------------


def _nodes(trace: Trace, info: _Model, cut: list[str]) -> tuple[list[Node], Node]:
    """The nodes the logits depend on, in call order, and the node that returned the logits."""
    boxes = set(cut)
    source = Node("input")
    producer: dict[int, Node] = {id(trace.x): source}
    weight = {key: frozenset({name}) for key, name in info.names.items()}
    nodes = [source]
    for call in trace.calls:
        if boxes.intersection(call.enclosing) or (call.module and call.name not in boxes):
            continue
        node = Node("module" if call.module is not None else "op", call)
        for t in call.inputs:
            if id(t) in producer:
                node.data_in.append((producer[id(t)], t))
            else:
                node.weights.append((weight.get(id(t), frozenset()), t))
        if not node.data_in:  # computed from weights alone (e.g. unit prototypes): a weight
            sources = frozenset().union(*(names for names, _ in node.weights))
            weight.update({id(t): sources for t in call.outputs})
            continue
        passed = node.data_in[0][0] if _passes_through(node) else node
        producer.update({id(t): passed for t in call.outputs})
        if passed is node:
            nodes.append(node)
    final = producer.get(id(trace.logits))
    if final is None or final is source:
        raise ValueError(f"{type(trace.model).__name__}'s logits do not depend on its input")
    needed = _ancestors(final)
    return [n for n in nodes if n in needed], final


def _passes_through(node: Node) -> bool:
    call = node.call
    if node.kind == "module":
        return isinstance(call.module, nn.Identity)
    named_weights = any(names for names, _ in node.weights)
    return (
        call.name in _PASS_THROUGH
        and len(node.data_in) == 1
        and not named_weights
        and len(call.outputs) == 1
        and call.outputs[0].shape == node.data_in[0][1].shape
    )


def _ancestors(node: Node) -> set[Node]:
    found, stack = set(), [node]
    while stack:
        current = stack.pop()
        if current not in found:
            found.add(current)
            stack.extend(src for src, _ in current.data_in)
    return found


def _successors(nodes: Iterable[Node]) -> dict[Node, list[Node]]:
    succ: dict[Node, list[Node]] = {n: [] for n in nodes}
    for n in succ:
        for src, _ in n.data_in:
            if src in succ:
                succ[src].append(n)
    return succ


# --- grouping into boxes ------------------------------------------------------------------------


@dataclass(eq=False)
class Box:
    """One box of the diagram: its nodes and what it stands for."""

    kind: str
    nodes: list[Node]
    path: str | None = None  # the module's path, for a module box


def _boxes(trace: Trace, info: _Model, cut: list[str]) -> list[Box]:
    """Input box, the model's boxes in call order, output box (its one node: the final node)."""
    nodes, final = _nodes(trace, info, cut)
    groups = _merged_ops(nodes)
    boxes = [Box("input", [nodes[0]])]
    for group in groups:
        first = group[0]
        if first.kind == "module":
            kind = "prototype" if _module_prototypes(info, first.call.name) else "module"
            boxes.append(Box(kind, group, first.call.name))
        elif first.kind == "op":
            boxes += _split_prototype_stretch(group, info)
    boxes.append(Box("output", [final]))
    return boxes


def _merged_ops(nodes: list[Node]) -> list[list[Node]]:
    """Each module node alone, torch functions merged along the wires between them, unless a
    merge would make a wire leave the merged box and come back (a cycle)."""
    succ = _successors(nodes)
    group = {n: i for i, n in enumerate(nodes)}
    members = {i: [n] for i, n in enumerate(nodes)}
    for v in nodes:
        for u, _ in v.data_in:
            a, b = group.get(u), group[v]
            if v.kind == u.kind == "op" and a != b and not _detour(a, b, group, members, succ):
                for n in members[b]:
                    group[n] = a
                members[a] = sorted(members[a] + members.pop(b), key=nodes.index)
    return [members[i] for i in sorted(members, key=lambda i: nodes.index(members[i][0]))]


def _detour(a: int, b: int, group: dict, members: dict, succ: dict) -> bool:
    """Whether group ``b`` is reachable from group ``a`` through some third group."""
    stack = [group[s] for n in members[a] for s in succ[n] if group[s] not in (a, b)]
    seen = set()
    while stack:
        g = stack.pop()
        if g == b:
            return True
        if g not in seen:
            seen.add(g)
            stack += [group[s] for n in members[g] for s in succ[n] if group[s] != a]
    return False


def _module_prototypes(info: _Model, path: str) -> list[str]:
    own = (f"{path}.{name}" for name, _ in info.modules[path].named_parameters())
    return [name for name in own if name in info.prototype_params]


def _node_prototypes(node: Node, info: _Model) -> set[str]:
    return {n for names, _ in node.weights for n in names if n in info.prototype_params}


def _split_prototype_stretch(group: list[Node], info: _Model) -> list[Box]:
    """A merged stretch of torch functions as one box, or, when it reads the prototypes, as up
    to three: what computes the prototype layer's input, the prototype layer (distances and
    similarities: every tensor keeps the prototype axis ``P``) and the readout from the first
    function that mixes ``P`` away (the last layer, ``P -> C``)."""
    readers = [n for n in group if _node_prototypes(n, info)]
    if not readers:
        return [Box("op", group)]
    num = info.params[sorted(_node_prototypes(readers[0], info))[0]].shape[0]
    inside = set(group)
    layer = _descendants(readers, inside)
    mixing = [n for n in layer if n not in readers and _mixes_axis(n, num)]
    readout = _descendants(mixing, inside)
    layer -= readout
    outside_layer = inside - layer - readout
    feeds = [src for n in readers for src, _ in n.data_in if src in outside_layer]
    before = _ancestors_within(feeds, outside_layer)  # what the prototype readers' input needs
    if all(_arranges(n) for n in before):  # e.g. flattening or normalising: part of the layer
        before = set()
    layer |= _ancestors_within(layer, inside) - before  # e.g. ProtoPNet's |z|^2 of the distance
    readout |= inside - layer - before
    parts = [("op", before), ("prototype", layer), ("readout", readout)]
    return [Box(kind, [n for n in group if n in part]) for kind, part in parts if part]


def _arranges(node: Node) -> bool:
    """Whether the node only rearranges or rescales its input (no named weight read)."""
    if any(names for names, _ in node.weights):
        return False
    same = all(t.shape == node.data_in[0][1].shape for t in node.call.outputs)
    return node.call.name in _RESHAPES or (len(node.data_in) == 1 and same)


def _mixes_axis(node: Node, size: int) -> bool:
    """Whether the node mixes the prototype axis away: a tensor it returns has no axis of
    ``size`` after the batch, or it reads a weight matrix with such an axis (class weights;
    a per-prototype vector such as a width is no mixing)."""
    lost = not all(size in tuple(t.shape[1:]) for t in node.call.outputs)
    matrix = any(t.dim() >= 2 and size in t.shape for names, t in node.weights if names)
    return lost or matrix


def _descendants(starts: list[Node], inside: set[Node]) -> set[Node]:
    succ = _successors(inside)
    found, stack = set(), list(starts)
    while stack:
        n = stack.pop()
        if n not in found:
            found.add(n)
            stack += succ[n]
    return found


def _ancestors_within(nodes: Iterable[Node], inside: set[Node]) -> set[Node]:
    found, stack = set(), list(nodes)
    while stack:
        n = stack.pop()
        if n not in found:
            found.add(n)
            stack += [src for src, _ in n.data_in if src in inside]
    return found


# --- the JSON-ready diagram ---------------------------------------------------------------------


def _as_dict(trace: Trace, info: _Model, boxes: list[Box]) -> dict:
    owner = {n: i for i, box in enumerate(boxes) for n in box.nodes if box.kind != "output"}
    wires = _wires(trace, boxes, owner)
    rows = [_box_row(i, box, info, trace) for i, box in enumerate(boxes)]
    prototypes = None
    if info.prototype_params:
        prototypes = list(trace.model.prototypes.shape)
    return {
        "model": type(trace.model).__name__,
        "batch": int(trace.x.shape[0]),
        "num_classes": int(trace.logits.shape[-1]),
        "prototypes": prototypes,
        "boxes": rows,
        "wires": [{"source": s, "target": t, "shape": list(x.shape)} for s, t, x in wires],
    }


def _wires(trace: Trace, boxes: list[Box], owner: dict) -> list[tuple[int, int, torch.Tensor]]:
    seen, wires = set(), []
    for target, box in enumerate(boxes[:-1]):
        for node in box.nodes:
            for src, tensor in node.data_in:
                source = owner[src]
                if source != target and (source, target, id(tensor)) not in seen:
                    seen.add((source, target, id(tensor)))
                    wires.append((source, target, tensor))
    final = owner[boxes[-1].nodes[0]]
    wires.append((final, len(boxes) - 1, trace.logits))
    return wires


def _box_row(index: int, box: Box, info: _Model, trace: Trace) -> dict:
    """The box as the diagram lists it; its input and output shapes are those its calls
    recorded (a module: what its forward hooks saw), not those of the wires."""
    row = {"id": index, "kind": box.kind, "repeat": 1}
    if box.kind == "input":
        return row | _terminal("input", [], [list(trace.x.shape)])
    if box.kind == "output":
        return row | _terminal("logits", [list(trace.logits.shape)], [])
    inside = set(box.nodes)
    inputs = _unique_shapes(t for n in box.nodes for src, t in n.data_in if src not in inside)
    fed = {src for n in box.nodes for src, _ in n.data_in}
    outputs = _unique_shapes(t for n in box.nodes if n not in fed for t in n.call.outputs)
    row |= {"inputs": inputs, "outputs": outputs}
    if box.path is not None:
        return row | _module_fields(info, box.path, box.kind)
    return row | _function_fields(box, info, inputs, outputs)


def _terminal(name: str, inputs: list, outputs: list) -> dict:
    return {"name": name, "operation": "", "inputs": inputs, "outputs": outputs, "params": 0,
            "weights": []}  # fmt: skip


def _unique_shapes(found: Iterable[torch.Tensor]) -> list[list[int]]:
    seen: dict[int, list[int]] = {}
    for t in found:
        seen.setdefault(id(t), list(t.shape))
    return list(seen.values())


def _module_fields(info: _Model, path: str, kind: str) -> dict:
    module = info.modules[path]
    repeat = _repeat(info, path)
    own = [(f"{path}.{name}", p) for name, p in module.named_parameters(recurse=False)]
    if kind == "prototype":
        own = [(n, info.params[n]) for n in _module_prototypes(info, path)]
    return {
        "name": path,
        "operation": describe_module(module, info, path, repeat),
        "params": _param_count(module),
        "weights": [_weight(name, p, info) for name, p in own],
        "repeat": repeat,
    }


def _function_fields(box: Box, info: _Model, inputs: list, outputs: list) -> dict:
    names = list(dict.fromkeys(n.call.name for n in box.nodes))
    operation = " → ".join(names[:_OPS_SHOWN]) + (" → …" if len(names) > _OPS_SHOWN else "")
    params = sorted(
        {n for node in box.nodes for names_, _ in node.weights for n in names_ if n in info.params}
    )
    title = {"prototype": "prototype layer", "readout": "last layer"}.get(box.kind, names[0])
    if box.kind == "readout" and inputs and outputs:
        operation = f"{inputs[0][-1]} → {outputs[0][-1]} classes: {operation}"
    return {
        "name": title,
        "operation": operation,
        "params": sum(info.params[n].numel() for n in params),
        "weights": [_weight(n, info.params[n], info) for n in params],
    }


def _weight(name: str, param: torch.Tensor, info: _Model) -> dict:
    return {"name": name, "shape": list(param.shape), "prototype": name in info.prototype_params}


def describe_module(module: nn.Module, info: _Model, path: str, repeat: int) -> str:
    """A short description: the layer's geometry for common layers, the blocks for others."""
    kind = type(module).__name__
    if isinstance(module, nn.modules.conv._ConvNd):
        size = "×".join(map(str, module.kernel_size))
        stride = f", stride {module.stride[0]}" if max(module.stride) > 1 else ""
        prefix = "transposed conv" if module.transposed else "conv"
        return f"{prefix} {size}, {module.in_channels}→{module.out_channels}{stride}"
    if isinstance(module, nn.Linear):
        return f"linear {module.in_features}→{module.out_features}"
    children = [type(info.modules[c]).__name__ for c in _frontier(info, path)]
    if repeat > 1:
        return f"{children[0]} ×{repeat}"
    if children:
        shown = " → ".join(children[:3]) + (" → …" if len(children) > 3 else "")
        return f"{kind}: {shown}"
    return kind
