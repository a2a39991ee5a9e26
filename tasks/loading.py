"""Loading a trained model for the evaluate and explain tasks."""

from __future__ import annotations

from pathlib import Path


def load_trained(checkpoint: Path, dataset_path: Path):
    """The model of ``checkpoint``, with any post-training reference statistics fitted.

    Prob-PSENN measures explanation uncertainty against the training inputs of each class
    (``fit_reference``); that is computed here from the training split, the same for every task
    (on an image dataset, from the class-balanced sample of :func:`reference_rows`).
    """
    from components.data.decoded_memory import reference_rows
    from components.data.reader import load_meta, read_rows, read_split
    from components.training.checkpoint import load_model

    model, spec = load_model(checkpoint)
    if hasattr(model, "fit_reference"):
        import torch

        if load_meta(dataset_path).is_image:
            x, y = read_rows(dataset_path, "train", reference_rows(dataset_path))
        else:
            x, y = read_split(dataset_path, "train")
        model.fit_reference(torch.as_tensor(x), torch.as_tensor(y))
    return model, spec
