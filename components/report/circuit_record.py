"""Recording a forward pass for a neural circuit diagram (:mod:`components.report.circuit`).

:func:`record` runs the model once with forward hooks on every submodule (each module call with
the tensors it read and returned) and a ``TorchFunctionMode`` (every torch function called, with
the module calls around it), in the order the calls finished.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

BATCH = 2  # example batch size: the diagram's N


@dataclass(eq=False)
class Call:
    """One recorded call: a module's ``forward`` (``module`` set) or a torch function.

    Attributes:
        name: the module's path in the model (e.g. ``features.layer1``) or the function's name.
        module: the module called, or None for a torch function.
        inputs: the tensors it read (arguments, in order, each once).
        outputs: the tensors it returned.
        enclosing: the paths of the modules running around it, outermost first.
    """

    name: str
    module: nn.Module | None
    inputs: list[torch.Tensor]
    outputs: list[torch.Tensor]
    enclosing: tuple[str, ...]


@dataclass(eq=False)
class Trace:
    """A recorded forward pass: the example input, every call in completion order, the logits."""

    model: nn.Module
    x: torch.Tensor
    calls: list[Call]
    logits: torch.Tensor


def tensors(value) -> list[torch.Tensor]:
    """The tensors in ``value`` (nested tuples, lists, dicts and dataclasses), each once."""
    found: dict[int, torch.Tensor] = {}

    def walk(item) -> None:
        if isinstance(item, torch.Tensor):
            found.setdefault(id(item), item)
        elif isinstance(item, list | tuple):
            for element in item:
                walk(element)
        elif isinstance(item, dict):
            for element in item.values():
                walk(element)
        elif dataclasses.is_dataclass(item) and not isinstance(item, type):
            for f in dataclasses.fields(item):
                walk(getattr(item, f.name))

    walk(value)
    return list(found.values())


class _Recorder(TorchFunctionMode):
    """Records module calls (through forward hooks) and torch function calls (as a mode)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.calls: list[Call] = []
        self._running: list[tuple[str, list[torch.Tensor]]] = []
        self._handles = []
        for path, module in model.named_modules():
            if path:
                self._handles += [
                    module.register_forward_pre_hook(self._enter(path), with_kwargs=True),
                    module.register_forward_hook(self._leave(module), with_kwargs=True),
                ]

    def _enter(self, path: str) -> Callable:
        def hook(module, args, kwargs) -> None:
            self._running.append((path, tensors((args, kwargs))))

        return hook

    def _leave(self, module: nn.Module) -> Callable:
        def hook(module_, args, kwargs, output) -> None:
            path, inputs = self._running.pop()
            self._record(path, module, inputs, tensors(output))

        return hook

    def _record(self, name: str, module, inputs: list, outputs: list) -> None:
        enclosing = tuple(path for path, _ in self._running)
        self.calls.append(Call(name, module, inputs, outputs, enclosing))

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        outputs = tensors(out)
        if outputs:  # shape queries, len() and the like return no tensor: not an operation
            self._record(_function_name(func), None, tensors((args, kwargs)), outputs)
        return out

    def remove_hooks(self) -> None:
        """Detach every hook from the model."""
        for handle in self._handles:
            handle.remove()


def _function_name(func) -> str:
    name = getattr(func, "__name__", type(func).__name__)
    return name.strip("_") or "op"


def record(model: nn.Module, x: torch.Tensor) -> Trace:
    """Run ``model(x)`` (no gradients) and record every module call and torch function."""
    recorder = _Recorder(model)
    try:
        with torch.no_grad(), recorder:
            output = model(x)
    finally:
        recorder.remove_hooks()
    logits = getattr(output, "logits", output)
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"{type(model).__name__}'s forward returned no logits tensor")
    return Trace(model=model, x=x, calls=recorder.calls, logits=logits)


def example_batch(input_shape: tuple[int, ...], batch: int = BATCH) -> torch.Tensor:
    """A seeded standard-normal batch ``(batch, *input_shape)`` (the global RNG is untouched)."""
    generator = torch.Generator().manual_seed(0)
    return torch.randn((batch, *input_shape), generator=generator)
