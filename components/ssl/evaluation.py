"""Probe a pre-trained encoder on an ingested dataset: what the pretrain flow reports."""

from __future__ import annotations

from pathlib import Path

from components.data.reader import read_split
from components.models import create_model
from components.ssl.checkpoint import load_encoder, read_encoder_checkpoint
from components.ssl.encoders import Embedder, encoder_of
from components.ssl.probes import collapse_diagnostics, embed, knn_probe, linear_probe


def evaluate_encoder(
    dataset_path: str | Path, folder: str | Path, *, probe_samples: int = 0, seed: int = 0
) -> dict:
    """Linear- and k-NN-probe test accuracy of the checkpoint's encoder and of the same encoder
    at its random initialisation (the baseline pre-training must beat), fit on the training
    split (its first ``probe_samples`` rows; 0: all), and the test embeddings' collapse
    diagnostics."""
    x_train, y_train = read_split(dataset_path, "train", limit=probe_samples or None)
    x_test, y_test = read_split(dataset_path, "test")
    trained = load_encoder(folder)
    result = _probes(trained, x_train, y_train, x_test, y_test, seed)
    random = _probes(_random_encoder(folder, seed), x_train, y_train, x_test, y_test, seed)
    result.update({f"random_init_{k}": v for k, v in random.items() if k.endswith("probe")})
    result["probe_train_rows"] = len(y_train)
    return result


def _probes(embedder, x_train, y_train, x_test, y_test, seed: int) -> dict:
    train, test = embed(embedder, x_train), embed(embedder, x_test)
    return {
        "linear_probe": linear_probe(train, y_train, test, y_test, seed),
        "knn_probe": knn_probe(train, y_train, test, y_test),
        **{f"test_{k}": v for k, v in collapse_diagnostics(test).items()},
    }


def _random_encoder(folder: str | Path, seed: int) -> Embedder:
    import torch

    spec, _, _ = read_encoder_checkpoint(folder)
    torch.manual_seed(seed)
    kwargs = {k: v for k, v in spec.get("kwargs", {}).items() if k != "pretrained"}
    model = create_model(
        spec["name"],
        input_shape=tuple(spec["input_shape"]),
        num_classes=int(spec["num_classes"]),
        tiny=bool(spec.get("tiny")),
        **kwargs,
    )
    return Embedder(encoder_of(model)).eval()
