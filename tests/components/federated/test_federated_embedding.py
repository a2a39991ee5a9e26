"""federated.embedding: prototype averaging embeds with a pre-trained SSL encoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from components.federated.client import FederatedClient, check_embedding
from components.federated.messages import decode, encode, read_prototype_update
from components.federated.prototypes import class_sums
from components.federated.rounds import initial_prototype_state
from components.ssl.checkpoint import SSLCheckpointError, load_encoder
from components.ssl.config import SSLConfig
from components.ssl.learner import pretrain_encoder
from components.training.checkpoint import ModelSpec


@pytest.fixture(scope="module")
def ssl_checkpoint(tmp_path_factory):
    """A proto_ae encoder pre-trained for one epoch on 64 random 64-feature rows."""
    x = torch.randn(64, 64, generator=torch.Generator().manual_seed(0))
    result = pretrain_encoder(
        "proto_ae", x, SSLConfig(epochs=1, batch_size=32), num_classes=4, tiny=True
    )
    return str(result.save(tmp_path_factory.mktemp("ssl") / "best"))


def test_prototypes_are_class_means_of_the_ssl_encoders_output(ssl_checkpoint):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(20, 64)).astype(np.float32), np.arange(20) % 4
    spec = ModelSpec("mlp", (64,), 4, tiny=True)  # no encoder: without it, raw 64-d inputs
    client = FederatedClient("c0", x, y, spec, "prototypes", embedding=ssl_checkpoint)
    dim = check_embedding(ssl_checkpoint, (64,))
    assert dim != 64
    payload = encode(initial_prototype_state(4, dim))
    sums, counts = read_prototype_update(decode(client.fit_round(payload)))
    with torch.no_grad():
        z = load_encoder(ssl_checkpoint)(torch.from_numpy(x)).double().numpy()
    expected_sums, expected_counts = class_sums(z, y, 4)
    assert sums.shape == (4, dim)
    np.testing.assert_allclose(sums, expected_sums, rtol=1e-6)
    assert counts.tolist() == expected_counts.tolist() == [5, 5, 5, 5]


def test_a_bad_embedding_is_refused(ssl_checkpoint, tmp_path):
    with pytest.raises(SSLCheckpointError, match="federated.embedding=.*no such folder"):
        check_embedding(str(tmp_path / "nowhere"), (64,))
    with pytest.raises(SSLCheckpointError, match="federated.embedding=.*incomplete"):
        check_embedding(str(tmp_path), (64,))
    with pytest.raises(SSLCheckpointError, match=r"reads inputs \(64,\).*\(1, 8, 8\)"):
        check_embedding(ssl_checkpoint, (1, 8, 8))


def test_federated_continual_clients_embed_with_the_ssl_encoder(ssl_checkpoint):
    from components.continual.config import ContinualConfig
    from components.continual.federated import ContinualClient

    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(16, 64)).astype(np.float32), np.arange(16) % 4
    config = ContinualConfig(methods=("ncm",)).learner_config("ncm", 64, 4)
    client = ContinualClient(config, x, y, num_tasks=2, seed=0, embedding=ssl_checkpoint)
    sums, counts = read_prototype_update(decode(client.step(0)))
    with torch.no_grad():
        z = load_encoder(ssl_checkpoint)(torch.from_numpy(x)).double().numpy()
    z /= np.linalg.norm(z, axis=1, keepdims=True)  # the NCM learner's L2-normalised embedding
    seen = counts > 0
    assert sums.shape == (4, check_embedding(ssl_checkpoint, (64,))) and seen.sum() == 2
    np.testing.assert_allclose(sums[seen], class_sums(z, y, 4)[0][seen], rtol=1e-5, atol=1e-6)
