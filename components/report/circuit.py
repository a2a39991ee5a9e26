"""Neural circuit diagrams of a model, traced from its own modules (Abbott, TMLR 2024).

Abbott's neural circuit diagrams ("Neural Circuit Diagrams: Robust Diagrams for the
Communication, Implementation, and Analysis of Deep Learning Architectures"; reference notebook
and figures: github.com/vtabbott/Neural-Circuit-Diagrams) draw a network as operations (boxes,
learned ones bold) joined by wires that carry tensors, one wire per axis labelled with its size;
learned weights enter the operation that uses them, parallel branches sit side by side.

:func:`trace_circuit` builds that content from one forward pass of the model on an example batch
of ``BATCH`` inputs: forward hooks on every submodule record each module call with the tensors it
read and returned, and a ``TorchFunctionMode`` records every torch function called outside them.
A wire joins two boxes when the tensor one returned is the tensor the other read (identity, not
shape), so the shapes on the wires are the ones the forward pass really carried. Forward hooks
work for every model; ``torch.fx``'s symbolic trace does not (most models check the batch's
shape, which is data-dependent control flow).

Readable boxes (:mod:`components.report.circuit_boxes`): the model's called child modules are
boxes, expanded into their own children while the diagram stays within ``MAX_BOXES``; a
container of ``k`` blocks of one kind stays one box, "BasicBlock ×k". Torch functions called in a
model's own ``forward`` (the prototype distances of most prototype models) are merged into one
box per connected stretch. A stretch that reads the model's prototypes (the parameters
``model.prototypes`` is computed from) is split into the prototype layer (prototypes ``P×D`` as
its weight, distances/similarities out, every tensor keeping the prototype axis) and the readout
that mixes the prototype axis into class logits (the last layer, ``P -> C``). Only what the
logits depend on is drawn (a decoder's reconstruction branch is not).

Departures from the paper: the batch axis is drawn like any other axis (the paper leaves the
broadcast batch axis implicit), and boxes are named after the modules and functions of the
code rather than typeset symbols.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from components.report.circuit_boxes import diagram
from components.report.circuit_record import example_batch, record

MAX_BOXES = 16  # expansion stops before the diagram has more boxes than this


def trace_circuit(
    model: nn.Module, input_shape: tuple[int, ...], *, max_boxes: int = MAX_BOXES
) -> dict:
    """The neural circuit diagram of ``model`` on a batch of ``BATCH`` inputs of ``input_shape``.

    The model runs once in eval mode (its mode is restored afterwards).

    Returns:
        A JSON-ready dict: ``model`` (class name), ``batch``, ``num_classes``, ``prototypes``
        (the shape of ``model.prototypes``, or None), ``boxes`` (``id``, ``kind``: input,
        module, op, prototype, readout or output; ``name``, ``operation``, ``inputs`` and
        ``outputs`` (shapes), ``params``, ``weights`` (``name``, ``shape``, ``prototype``),
        ``repeat``) and ``wires`` (``source``, ``target``, ``shape``), in call order.
    """
    was_training = model.training
    model.eval()
    try:
        trace = record(model, example_batch(tuple(input_shape)))
    finally:
        model.train(was_training)
    return diagram(trace, max_boxes=max_boxes)


def checkpoint_circuit(checkpoint: Path) -> dict:
    """:func:`trace_circuit` of the trained model in a checkpoint folder."""
    from components.training.checkpoint import load_model

    model, spec = load_model(checkpoint)
    return trace_circuit(model, spec.input_shape)
