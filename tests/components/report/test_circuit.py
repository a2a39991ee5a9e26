"""Neural circuit diagrams traced from the models' own modules (components.report.circuit)."""

import struct

import pytest
import torch
from torch import nn

from components.models import PrototypeModel, create_model, list_models
from components.report import ReportData, write_report
from components.report.circuit import MAX_BOXES, checkpoint_circuit, trace_circuit
from components.report.circuit_record import BATCH
from components.report.circuit_section import circuit_section
from components.report.figure_set import FigureSet
from components.training.checkpoint import ModelSpec, save_checkpoint

IMAGE = (1, 8, 8)
CLASSES = 3


def _tiny(name: str):
    torch.manual_seed(0)
    return create_model(name, input_shape=IMAGE, num_classes=CLASSES, tiny=True)


def _reachable(circuit: dict, start: int, forward: bool) -> set[int]:
    ends = ("source", "target") if forward else ("target", "source")
    found, stack = set(), [start]
    while stack:
        box = stack.pop()
        if box not in found:
            found.add(box)
            stack += [w[ends[1]] for w in circuit["wires"] if w[ends[0]] == box]
    return found


@pytest.mark.parametrize("name", list_models())
def test_every_model_draws_a_diagram_whose_wires_chain_into_its_logits(name):
    model = _tiny(name)
    circuit = trace_circuit(model, IMAGE)
    boxes = {b["id"]: b for b in circuit["boxes"]}
    for wire in circuit["wires"]:  # what a box returned is what the next box read
        assert wire["shape"] in boxes[wire["source"]]["outputs"], wire
        assert wire["shape"] in boxes[wire["target"]]["inputs"], wire
    output = next(b["id"] for b in boxes.values() if b["kind"] == "output")
    assert [w["shape"] for w in circuit["wires"] if w["target"] == output] == [[BATCH, CLASSES]]
    assert boxes[0]["outputs"] == [[BATCH, *IMAGE]]
    # every box is on a path from the input to the logits, within the cap
    assert _reachable(circuit, 0, True) == set(boxes) == _reachable(circuit, output, False)
    assert len(boxes) - 2 <= MAX_BOXES
    if isinstance(model, PrototypeModel):
        num, *dims = model.prototypes.shape
        layers = [b for b in boxes.values() if b["kind"] == "prototype"]
        weights = [w for b in layers for w in b["weights"] if w["prototype"]]
        assert sum(w["shape"][0] for w in weights) == num
        assert all(w["shape"][1:] == dims for w in weights)
        for layer in layers:  # a similarity per prototype: the prototype axis stays
            own = sum(w["shape"][0] for w in layer["weights"] if w["prototype"])
            assert all(own in shape[1:] for shape in layer["outputs"])
        assert circuit["prototypes"] == [num, *dims]
    else:
        assert "prototype" not in {b["kind"] for b in boxes.values()}


def test_cnn_is_drawn_as_its_layers_with_the_shapes_they_carried():
    circuit = trace_circuit(_tiny("cnn"), IMAGE)
    names = [b["name"] for b in circuit["boxes"]]
    assert names == [
        "input", "features.0", "features.1", "features.2", "head.0", "head.1", "head.2", "logits",
    ]  # fmt: skip
    assert [w["shape"] for w in circuit["wires"]] == [
        [2, 1, 8, 8], [2, 4, 8, 8], [2, 4, 8, 8], [2, 4, 4, 4], [2, 64], [2, 64], [2, 3],
    ]  # fmt: skip
    conv = circuit["boxes"][1]
    assert conv["operation"] == "conv 3×3, 1→4" and conv["params"] == 4 * 9 + 4
    assert [w["shape"] for w in conv["weights"]] == [[4, 1, 3, 3], [4]]
    collapsed = trace_circuit(_tiny("cnn"), IMAGE, max_boxes=2)  # the cap keeps containers
    assert [b["operation"] for b in collapsed["boxes"][1:-1]] == [
        "Sequential: Conv2d → ReLU → MaxPool2d",
        "Sequential: Flatten → Dropout → Linear",
    ]


def test_protopnet_wires_latent_to_prototype_layer_to_last_layer():
    model = _tiny("protopnet")
    boxes = trace_circuit(model, IMAGE)["boxes"]
    layer, readout = boxes[-3], boxes[-2]
    num, dim = model.prototypes.shape
    assert (layer["kind"], readout["kind"]) == ("prototype", "readout")
    assert layer["inputs"] == [[2, dim, 4, 4]] and layer["outputs"] == [[2, num]]
    assert layer["weights"] == [
        {"name": "prototype_vectors", "shape": [num, dim], "prototype": True}
    ]
    assert readout["inputs"] == [[2, num]] and readout["outputs"] == [[2, CLASSES]]
    assert [w["shape"] for w in readout["weights"]] == [[CLASSES, num]]  # P -> C


class _Block(nn.Module):
    """A ResNet basic block: two 3x3 convolutions and the identity added back."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, x):
        return torch.relu(x + self.conv2(torch.relu(self.conv1(x))))


def test_a_resnet_stage_of_repeated_blocks_is_one_box():
    # resnet18's layout in small: stem, stages of 2 identical blocks, pooled linear head
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, stride=2, padding=1),
        nn.Sequential(_Block(4), _Block(4)),
        nn.Sequential(_Block(4), _Block(4)),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, CLASSES),
    )
    boxes = trace_circuit(model, IMAGE)["boxes"][1:-1]
    assert [(b["name"], b["repeat"]) for b in boxes] == [
        ("0", 1), ("1", 2), ("2", 2), ("3", 1), ("4", 1), ("5", 1),
    ]  # fmt: skip
    stage = boxes[1]
    assert stage["operation"] == "_Block ×2" and stage["outputs"] == [[2, 4, 4, 4]]
    assert stage["params"] == 2 * 2 * (4 * 4 * 9 + 4)


def test_checkpoint_diagram_renders_in_the_report(tmp_path):
    model = _tiny("st_protopnet")
    spec = ModelSpec("st_protopnet", IMAGE, CLASSES, tiny=True)
    circuit = checkpoint_circuit(save_checkpoint(tmp_path / "best", model, spec, {}))
    assert circuit == trace_circuit(model, IMAGE)
    assert circuit_section(None, FigureSet(tmp_path / "none")) == ""
    data = ReportData(
        title="t", run_id="r", headline={}, metrics={}, history=[], config_yaml="", meta={},
        data_meta={}, explanations=None, class_names=["a", "b", "c"], feature_shape=IMAGE,
        circuit=circuit,
    )  # fmt: skip
    html = write_report(tmp_path / "run", data).read_text()
    assert "<h2>Model</h2>" in html and "prototypes (12×8)" in html
    png = (tmp_path / "run" / "figures" / "circuit.png").read_bytes()
    width, height = struct.unpack(">II", png[16:24])  # the PNG header's IHDR chunk
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and 600 < width <= 1300 and height > 300
