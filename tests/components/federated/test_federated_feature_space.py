"""Prototype averaging says which feature space its prototypes live in: raw inputs for a model
without ``encode`` (mlp), the model's encoder for one with it (protopnet), the SSL embedding
with ``federated.embedding``; the log line hints at ``federated.embedding`` and the report
records the space."""

from __future__ import annotations

import numpy as np
import torch

from components.federated.client import (
    MODEL_ENCODER,
    RAW_INPUTS,
    SSL_EMBEDDING,
    embed,
    feature_space,
    feature_space_line,
)
from components.report.federated_section import federated_section
from components.report.figure_set import FigureSet
from components.training.checkpoint import ModelSpec

MLP = ModelSpec("mlp", (1, 8, 8), 10, tiny=True)
PROTOPNET = ModelSpec("protopnet", (1, 8, 8), 10, tiny=True)


def test_mlp_prototypes_are_raw_inputs_and_protopnet_prototypes_its_encoding():
    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    assert feature_space(MLP) == RAW_INPUTS
    assert np.array_equal(embed(MLP.build(), x), x.flatten(1).double().numpy())
    assert feature_space(PROTOPNET) == MODEL_ENCODER
    model = PROTOPNET.build()
    with torch.no_grad():
        encoded = model.eval().encode(x).flatten(1).double().numpy()
    assert np.array_equal(embed(model, x), encoded)
    assert encoded.shape[1] != 64  # not the 64 input features
    assert feature_space(MLP, embedding="runs/pretrain/x/checkpoints/best") == SSL_EMBEDDING


def test_the_log_line_and_the_report_name_the_raw_input_space(tmp_path):
    line = feature_space_line(RAW_INPUTS, "mlp")
    assert "raw (standardised) input space" in line and "model=mlp has no encode" in line
    assert "set federated.embedding=" in line
    assert "model=protopnet's encoder" in feature_space_line(MODEL_ENCODER, "protopnet")
    data = {"num_clients": 2, "rounds": 1, "strategies": {"prototypes": {}}}
    raw = federated_section({**data, "feature_space": RAW_INPUTS}, FigureSet(tmp_path))
    assert "raw (standardised) input space" in raw and "Set federated.embedding" in raw
    encoder = federated_section({**data, "feature_space": MODEL_ENCODER}, FigureSet(tmp_path))
    assert "untrained model encoder" in encoder and "raw (standardised)" not in encoder
