"""How good an embedding is without fine-tuning: linear and k-NN probes, collapse diagnostics.

The linear probe is scikit-learn's logistic regression on standardised embeddings (the papers
train a linear layer with SGD on frozen features; on a few thousand rows the convex solver gets
the same optimum faster); the k-NN probe votes among the ``k = 20`` nearest training embeddings
by cosine similarity (as DINO's and InstDisc's k-NN evaluations, without their temperature
weighting).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

KNN_K = 20


@torch.no_grad()
def embed(embedder: nn.Module, x, batch_size: int = 512) -> np.ndarray:
    """``(N, D)`` float64 embeddings of ``x`` (eval mode, in batches)."""
    embedder.eval()
    x = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    parts = [embedder(chunk).double().numpy() for chunk in x.split(batch_size)]
    return np.concatenate(parts)


def linear_probe(train: np.ndarray, y_train, test: np.ndarray, y_test, seed: int = 0) -> float:
    """Test accuracy of a logistic regression fit on the training embeddings."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
    probe.fit(train, y_train)
    return float(probe.score(test, y_test))


def knn_probe(train: np.ndarray, y_train, test: np.ndarray, y_test, k: int = KNN_K) -> float:
    """Test accuracy of a cosine k-nearest-neighbour vote among the training embeddings."""
    from sklearn.neighbors import KNeighborsClassifier

    knn = KNeighborsClassifier(n_neighbors=min(k, len(train)), metric="cosine")
    knn.fit(train, y_train)
    return float(knn.score(test, y_test))


def collapse_diagnostics(embeddings: np.ndarray) -> dict[str, float]:
    """``embedding_std``: mean per-dimension std of the l2-normalised embeddings (SimSiam's
    collapse indicator: 0 when collapsed, about ``1/sqrt(D)`` for spread-out embeddings);
    ``effective_rank``: ``exp`` of the entropy of the normalised singular values of the centred
    embeddings (Roy & Vetterli 2007): 1 when they lie on a line, ``D`` when isotropic."""
    e = np.asarray(embeddings, dtype=np.float64)
    unit = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    singular = np.linalg.svd(e - e.mean(0), compute_uv=False)
    total = singular.sum()
    if total <= 1e-12:
        rank = 1.0
    else:
        p = singular / total
        p = p[p > 0]
        rank = float(np.exp(-(p * np.log(p)).sum()))
    return {"embedding_std": float(unit.std(0).mean()), "effective_rank": rank}


def probe_accuracies(embedder: nn.Module, train, y_train, test, y_test, seed: int = 0) -> dict:
    """``linear_probe`` and ``knn_probe`` test accuracies of ``embedder``."""
    tr, te = embed(embedder, train), embed(embedder, test)
    return {
        "linear_probe": linear_probe(tr, y_train, te, y_test, seed),
        "knn_probe": knn_probe(tr, y_train, te, y_test),
    }
