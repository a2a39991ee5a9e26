"""The gallery of pushed prototypes: the training patch each prototype was projected onto.

After ProtoPNet's push every prototype *is* a latent patch of one training sample, so the honest
picture of a prototype is that sample with the patch's receptive field marked (Chen et al., 2019,
draw the upsampled activation; we draw the grid cell the patch covers).
"""

from __future__ import annotations

import numpy as np
import torch

from components.evaluation.predict import eval_mode


def is_pushed(model) -> bool:
    """Whether the model records push provenance and every active prototype was pushed."""
    pushed = getattr(model, "pushed", None)
    return isinstance(pushed, torch.Tensor) and bool(pushed.all())


def pushed_gallery(model, source_images: np.ndarray) -> dict:
    """Source training image, patch box and class of every prototype.

    Args:
        model: a pushed part-prototype model (``push_sample``, ``push_location`` buffers and
            ``activation_maps``).
        source_images: the training image each prototype was pushed onto, in prototype order
            (``read_rows(dataset, "train", model.push_sample)``).

    Returns:
        ``images`` ``(P, *input_shape)``, ``samples`` (training row of each), ``boxes``
        (``top, left, height, width`` in input pixels) and ``classes``.
    """
    samples = model.push_sample.cpu().numpy()
    rows, cols = model.push_location.cpu().numpy().T
    images = np.asarray(source_images)
    with eval_mode(model), torch.no_grad():
        grid_h, grid_w = model.activation_maps(torch.as_tensor(images[:1])).shape[-2:]
    cell_h, cell_w = images.shape[-2] / grid_h, images.shape[-1] / grid_w
    boxes = [(r * cell_h, c * cell_w, cell_h, cell_w) for r, c in zip(rows, cols, strict=True)]
    return {
        "images": images,
        "samples": samples.tolist(),
        "boxes": [tuple(float(v) for v in box) for box in boxes],
        "classes": model.prototype_classes().cpu().tolist(),
    }
