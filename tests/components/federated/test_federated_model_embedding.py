"""Prototype averaging embeds with the model's own encoder (``SennModel.embedding``) for
proto_ae and prob_psenn (autoencoder latent), cnn, st_protopnet and resnet (conv trunk), not
with the raw inputs their ``encode`` (a dict, or none) used to leave it with."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from components.federated.client import (
    MODEL_ENCODER,
    FederatedClient,
    build_model,
    embed,
    feature_space,
    feature_space_line,
)
from components.federated.messages import decode, encode, read_prototype_update
from components.federated.rounds import initial_prototype_state
from components.training.checkpoint import ModelSpec

INPUT_SHAPE = (3, 8, 8)  # 192 input features: no tiny model's embedding has that width
NUM_CLASSES = 4


@pytest.mark.parametrize("name", ["proto_ae", "cnn", "st_protopnet", "prob_psenn", "resnet"])
def test_client_prototype_features_are_the_models_embedding(name):
    spec = ModelSpec(name, INPUT_SHAPE, NUM_CLASSES, tiny=True)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, *INPUT_SHAPE)).astype(np.float32)
    y = np.arange(12) % NUM_CLASSES
    client = FederatedClient("c0", x, y, spec, "prototypes", model_seed=3)
    model = build_model(spec, model_seed=3)  # the weights every client and the server share
    with torch.no_grad():
        z = model.eval().embedding(torch.from_numpy(x)).double().numpy()
    assert z.shape[0] == 12 and z.shape[1] != np.prod(INPUT_SHAPE)
    assert np.array_equal(embed(model, x), z)  # the clients' and the server's feature function
    payload = encode(initial_prototype_state(NUM_CLASSES, z.shape[1]))
    sums, counts = read_prototype_update(decode(client.fit_round(payload)))
    assert sums.shape == (NUM_CLASSES, z.shape[1])  # the embedding's width, not the input's
    expected = np.stack([z[y == c].sum(axis=0) for c in range(NUM_CLASSES)])
    # the update travels as float32 (messages.prototype_update)
    np.testing.assert_array_equal(sums, expected.astype(np.float32))
    assert counts.tolist() == [3, 3, 3, 3]

    assert feature_space(spec, model_seed=3) == MODEL_ENCODER
    assert f"model={name}'s encoder space" in feature_space_line(MODEL_ENCODER, name)
