"""Loading a trained model for the stages that use it (evaluate, explain)."""

from __future__ import annotations

from pathlib import Path


def load_trained(checkpoint: Path, dataset_path: Path):
    """The model of ``checkpoint`` and its spec, with any post-training reference statistics
    fitted.

    Prob-PSENN measures explanation uncertainty against the training inputs of each class
    (``fit_reference``); that is computed here from the training split, the same for every stage
    (on an image dataset, from the class-balanced sample of
    :func:`~components.data.decoded_memory.reference_rows`).

    Args:
        checkpoint: the checkpoint folder.
        dataset_path: the dataset the model was trained on.

    Returns:
        ``(model, spec)`` as :func:`components.training.checkpoint.load_model` returns them.
    """
    # Imported here: tasks import this module when they load, and must not pull in torch.
    import torch

    from components.data.decoded_memory import reference_rows
    from components.data.reader import load_meta, read_rows, read_split
    from components.training.checkpoint import load_model

    model, spec = load_model(checkpoint)
    if hasattr(model, "fit_reference"):
        if load_meta(dataset_path).is_image:
            x, y = read_rows(dataset_path, "train", reference_rows(dataset_path))
        else:
            x, y = read_split(dataset_path, "train")
        model.fit_reference(torch.as_tensor(x), torch.as_tensor(y))
    return model, spec
