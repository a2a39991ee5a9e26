"""SSL checkpoint folders: a pre-trained encoder that ``model.params.pretrained`` can name.

Layout of ``<run>/checkpoints/best/``:

* ``encoder.safetensors``: the encoder's tensors keyed as in the source model's
  ``state_dict()`` (``encoder.0.weight`` for ``proto_ae``, ``features.0.weight`` for ``cnn``,
  ``net.1.weight`` for ``mlp``; :mod:`components.ssl.encoders`);
* ``model.json``: how to rebuild the source model (``name``, ``input_shape``, ``num_classes``,
  ``tiny``, ``kwargs``), as :class:`components.training.checkpoint.ModelSpec` writes it;
* ``ssl.json``: ``{"format": "sennflow-ssl-encoder", "version": 1, "objective", "part",
  "embedding_dim", "projector_width", "epochs"}``, the marker that tells it from a supervised
  checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from components.models import create_model
from components.ssl.encoders import Embedder, encoder_of, encoder_part, encoder_state

ENCODER = "encoder.safetensors"
SPEC = "model.json"
MARKER = "ssl.json"
FORMAT = "sennflow-ssl-encoder"
_SHOWN = 5


class SSLCheckpointError(ValueError):
    """An SSL checkpoint folder that is incomplete, unreadable or does not fit the model."""


def is_ssl_checkpoint(folder: str | Path) -> bool:
    """Whether ``folder`` is an SSL checkpoint folder (it holds ``ssl.json``)."""
    return (Path(folder) / MARKER).is_file()


def save_encoder_checkpoint(folder: Path, model: nn.Module, spec: dict, info: dict) -> Path:
    """Write ``model``'s encoder, its ``spec`` (ModelSpec's fields) and ``info`` to ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(encoder_state(model), str(folder / ENCODER))
    (folder / SPEC).write_text(json.dumps(spec, indent=2))
    marker = {"format": FORMAT, "version": 1, "part": encoder_part(model), **info}
    (folder / MARKER).write_text(json.dumps(marker, indent=2))
    return folder


def read_encoder_checkpoint(folder: str | Path) -> tuple[dict, dict, dict[str, torch.Tensor]]:
    """The ``(spec, info, tensors)`` of an SSL checkpoint folder.

    Raises:
        SSLCheckpointError: naming the folder and the missing or unreadable file.
    """
    folder = Path(folder)
    missing = [n for n in (ENCODER, SPEC, MARKER) if not (folder / n).is_file()]
    if missing:
        raise SSLCheckpointError(
            f"SSL checkpoint {folder} is incomplete: missing {', '.join(missing)}"
        )
    try:
        spec = json.loads((folder / SPEC).read_text())
        info = json.loads((folder / MARKER).read_text())
        tensors = load_file(str(folder / ENCODER))
    except Exception as err:  # json and safetensors raise their own error types
        raise SSLCheckpointError(f"cannot read SSL checkpoint {folder}: {err}") from err
    if info.get("format") != FORMAT or not isinstance(spec, dict) or "name" not in spec:
        raise SSLCheckpointError(f"{folder / MARKER} is not a {FORMAT} checkpoint marker")
    return spec, info, tensors


def load_encoder_into(model: nn.Module, folder: str | Path) -> None:
    """Copy the checkpoint's encoder into ``model``'s encoder (its other weights stay).

    Raises:
        SSLCheckpointError: the checkpoint is unreadable, or its encoder does not fit: another
            encoder part, missing/unexpected keys or shape mismatches (the first few named).
    """
    spec, info, tensors = read_encoder_checkpoint(folder)
    part = encoder_part(model)
    where = f"model.params.pretrained={str(folder)!r}"
    if info.get("part") != part:
        raise SSLCheckpointError(
            f"{where} holds the '{info.get('part')}' of a {spec['name']} model, but "
            f"{type(model).__name__} keeps its encoder in '{part}'"
        )
    own = encoder_state(model)
    problems = {
        "missing keys": [k for k in own if k not in tensors],
        "unexpected keys": [k for k in tensors if k not in own],
        "shape mismatches (file vs model)": [
            f"{k} {tuple(tensors[k].shape)} vs {tuple(v.shape)}"
            for k, v in own.items()
            if k in tensors and tensors[k].shape != v.shape
        ],
    }
    if any(problems.values()):
        raise SSLCheckpointError(
            f"{where}: the encoder pre-trained on {spec['name']} (params {spec.get('kwargs', {})}, "
            f"input {tuple(spec.get('input_shape', ()))}) does not fit {type(model).__name__}: "
            + "; ".join(
                f"{label} ({len(keys)}): {', '.join(keys[:_SHOWN])}"
                for label, keys in problems.items()
                if keys
            )
        )
    prefix = f"{part}."
    encoder_of(model).load_state_dict(
        {k.removeprefix(prefix): v for k, v in tensors.items()}, strict=True
    )


def load_encoder(folder: str | Path) -> Embedder:
    """The checkpoint's encoder as a module mapping a batch ``(N, *input_shape)`` to ``(N, D)``
    embeddings (eval mode, rebuilt from ``model.json``)."""
    spec, _, _ = read_encoder_checkpoint(folder)
    kwargs = {k: v for k, v in spec.get("kwargs", {}).items() if k != "pretrained"}
    try:
        model = create_model(
            spec["name"],
            input_shape=tuple(spec["input_shape"]),
            num_classes=int(spec["num_classes"]),
            tiny=bool(spec.get("tiny", False)),
            **kwargs,
        )
    except (KeyError, TypeError, ValueError) as err:
        raise SSLCheckpointError(f"cannot rebuild the model of {folder}/{SPEC}: {err}") from err
    load_encoder_into(model, folder)
    return Embedder(encoder_of(model)).eval()
