"""Loading a trained model for the evaluate and explain tasks."""

from __future__ import annotations

from pathlib import Path


def load_trained(checkpoint: Path, dataset_path: Path):
    """The model of ``checkpoint``, with any post-training reference statistics fitted.

    Prob-PSENN measures explanation uncertainty against the training inputs of each class
    (``fit_reference``); that is computed here from the training split, the same for every task.
    """
    from components.data.reader import read_split
    from components.training.checkpoint import load_model

    model, spec = load_model(checkpoint)
    if hasattr(model, "fit_reference"):
        import torch

        x, y = read_split(dataset_path, "train")
        model.fit_reference(torch.as_tensor(x), torch.as_tensor(y))
    return model, spec
