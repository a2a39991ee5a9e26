"""TELL: the k-means layer identity, unsupervised loss, alternation, explanations, learning."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from components.evaluation.clustering import clustering_accuracy
from components.models import create_model
from components.models.tell import TELL, cluster_scores, squared_distances
from components.training.batches import ShardBatches
from components.training.checkpoint import ModelSpec
from components.training.config import TrainConfig
from components.training.fit import fit

BLOBS = ModelSpec(name="tell", input_shape=(8,), num_classes=3, tiny=True)


def blobs(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three well-separated Gaussian blobs in 8-D (centres ~N(0, 4^2), unit noise)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centres = rng.normal(0, 4, (3, 8))
    return (centres[y] + rng.normal(0, 1, (n, 8))).astype(np.float32), y


def fit_blobs(seed: int, epochs: int) -> tuple[TELL, np.ndarray, np.ndarray]:
    """Train the tiny TELL on 300 blob samples with the generic fit loop; return held-out data."""
    x, y = blobs(seed=seed)
    torch.manual_seed(seed)
    model = BLOBS.build()
    fit(
        model,
        ShardBatches(x[:300], y[:300], batch_size=32, shuffle=True, seed=seed),
        ShardBatches(x[300:], y[300:], batch_size=100, shuffle=False),
        cfg=TrainConfig(epochs=epochs, lr=0.01, seed=seed, early_stopping_patience=0),
        spec=BLOBS,
        report=lambda metrics, folder: None,
    )
    return model.eval(), x[300:], y[300:]


def predict(model: TELL, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.as_tensor(x)).logits.argmax(dim=1).numpy()


def test_layer_argmax_is_the_kmeans_assignment_on_the_sphere():
    gen = torch.Generator().manual_seed(0)
    z, centres = (
        torch.nn.functional.normalize(torch.randn(n, 6, generator=gen, dtype=torch.float64))
        for n in (500, 7)
    )
    scores = cluster_scores(z, centres)
    kmeans_distance = torch.cdist(z, centres).pow(2)
    # ||z - c||^2 = ||z||^2 - (2 c.z - ||c||^2) with ||z|| = 1
    torch.testing.assert_close(1.0 - scores, kmeans_distance)
    torch.testing.assert_close(squared_distances(z, centres), kmeans_distance)
    assert torch.equal(scores.argmax(dim=1), kmeans_distance.argmin(dim=1))


def test_model_logits_assign_each_embedding_to_its_nearest_normalised_centre():
    torch.manual_seed(0)
    model = create_model("tell", input_shape=(1, 8, 8), num_classes=5, tiny=True).double().eval()
    out = model(torch.randn(64, 1, 8, 8, dtype=torch.float64))
    torch.testing.assert_close(out.embedding.norm(dim=1), torch.ones(64, dtype=torch.float64))
    torch.testing.assert_close(model.prototypes.norm(dim=1), torch.ones(5, dtype=torch.float64))
    nearest = torch.cdist(out.embedding, model.prototypes).argmin(dim=1)
    assert torch.equal(out.logits.argmax(dim=1), nearest)
    assert out.logits.shape == (64, 5) and out.reconstruction.shape == (64, 1, 8, 8)


def test_num_clusters_defaults_to_num_classes_and_can_differ():
    assert create_model("tell", input_shape=(8,), num_classes=4, tiny=True).num_clusters == 4
    model = create_model("tell", input_shape=(8,), num_classes=4, tiny=True, num_clusters=6)
    assert model(torch.randn(3, 8)).logits.shape == (3, 6)
    assert TELL.supervised is False


def test_loss_ignores_labels_and_is_reconstruction_plus_weighted_kmeans_term():
    torch.manual_seed(0)
    model = create_model("tell", input_shape=(8,), num_classes=3, tiny=True, lambda_cluster=0.5)
    x = torch.randn(32, 8)
    out = model(x)
    a = model.loss(out, x, torch.zeros(32, dtype=torch.long))
    b = model.loss(out, x, torch.randint(0, 1000, (32,)))
    assert {k: v.item() for k, v in a.items()} == {k: v.item() for k, v in b.items()}
    cluster, reconstruction = a["cluster"].item(), a["reconstruction"].item()
    assert cluster == pytest.approx(out.distances.min(dim=1).values.mean().item())
    assert reconstruction == pytest.approx((out.reconstruction - x).pow(2).mean().item())
    assert a["total"].item() == pytest.approx(reconstruction + 0.5 * cluster)


def test_training_stages_alternate_network_and_centres_over_all_parameters():
    model = create_model("tell", input_shape=(8,), num_classes=3, tiny=True, alternate_every=2)
    stages = model.training_stages(5)
    assert [(s.name, s.epochs) for s in stages] == [("network", 2), ("centres", 2), ("network", 1)]
    network, centres = set(stages[0].trainable), set(stages[1].trainable)
    for name, _ in model.named_parameters():
        in_network = any(name.startswith(p) for p in network)
        in_centres = any(name.startswith(p) for p in centres)
        assert in_network != in_centres, name  # every parameter is trained in exactly one phase
    assert [n for n, _ in model.named_parameters() if n.startswith(tuple(centres))] == ["centres"]


def test_explanation_decomposes_the_assigned_score_exactly():
    torch.manual_seed(0)
    model = create_model("tell", input_shape=(1, 8, 8), num_classes=4, tiny=True).eval()
    x = torch.randn(10, 1, 8, 8)
    logits = model(x).logits
    explanations = model.explain(x, top_k=3)
    for row, e in zip(logits, explanations, strict=True):
        assert e.class_index == int(row.argmax())
        assert e.total_contribution + e.bias == pytest.approx(row[e.class_index].item(), abs=1e-5)
        assert e.bias == pytest.approx(-1.0)  # -||Omega_k||^2 for a unit centre
        assert e.prototype_indices[0] == e.class_index  # nearest centre first
        assert e.distances == sorted(e.distances)
        assert e.contributions[1:] == [0.0, 0.0]  # other centres do not enter score k
        runner_up = row.topk(2).values[1].item()  # the margin is the gap to the second score
        assert e.extras["margin"] == pytest.approx(row.max().item() - runner_up, abs=1e-6)
    with pytest.raises(ValueError, match="top_k"):
        model.explain(x, top_k=5)


def test_nearest_samples_and_decoded_centres():
    torch.manual_seed(0)
    model = create_model("tell", input_shape=(1, 8, 8), num_classes=3, tiny=True).eval()
    x = torch.randn(20, 1, 8, 8)
    indices, distances = model.nearest_samples(x, per_centre=4)
    assert indices.shape == distances.shape == (3, 4)
    all_distances = model(x).distances.T
    for k in range(3):
        torch.testing.assert_close(distances[k], all_distances[k, indices[k]])
        others = all_distances[k, [i for i in range(20) if i not in indices[k].tolist()]]
        assert distances[k].max() <= others.min()
    assert model.decode_prototypes().shape == (3, 1, 8, 8)


def test_seeded_training_is_deterministic():
    first, x, _ = fit_blobs(seed=3, epochs=3)
    second, _, _ = fit_blobs(seed=3, epochs=3)
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert np.array_equal(predict(first, x), predict(second, x))


def test_learns_well_separated_blobs():
    untrained = BLOBS.build().eval()
    model, x, y = fit_blobs(seed=0, epochs=20)
    # measured: 1.0 on held-out blobs for seeds 0-4; untrained 0.40-0.66
    assert clustering_accuracy(predict(model, x), y) >= 0.95
    assert clustering_accuracy(predict(untrained, x), y) < 0.9


@pytest.mark.slow
def test_clusters_digits_above_floor(tmp_path):
    from components.data.ingest import ingest
    from components.data.reader import read_split
    from components.data.spec import DataSpec

    path = ingest(DataSpec(source="digits"), tmp_path).path
    (x_train, y_train), (x_val, y_val) = read_split(path, "train"), read_split(path, "val")
    x_test, y_test = read_split(path, "test")
    spec = ModelSpec(name="tell", input_shape=(1, 8, 8), num_classes=10)
    accuracies = []
    for seed in range(3):
        torch.manual_seed(seed)
        model = spec.build()
        fit(
            model,
            ShardBatches(x_train, y_train, batch_size=64, shuffle=True, seed=seed),
            ShardBatches(x_val, y_val, batch_size=512, shuffle=False),
            cfg=TrainConfig(epochs=40, lr=1e-3, seed=seed, early_stopping_patience=0),
            spec=spec,
            report=lambda metrics, folder: None,
        )
        accuracies.append(clustering_accuracy(predict(model.eval(), x_test), y_test))
    # The median of three seeds: like k-means, a run can settle in a poor local optimum, and
    # which seed does depends on the CPU's float kernels. At 200 epochs seed 0 measured 0.770 on
    # the first machine it ran on and 0.643 on an AMD EPYC (AVX2), seeds 1-5 0.751-0.777 there.
    # At 100 epochs (half the time) on the EPYC, seeds 0-5: 0.758, 0.777, 0.758, 0.755, 0.688,
    # 0.770 (k-means on the standardised pixels: 0.51-0.69). At 40 epochs (this test's), seeds
    # 0-5 there: 0.751, 0.758, 0.751, 0.747, 0.647, 0.755.
    assert float(np.median(accuracies)) >= 0.70, accuracies
