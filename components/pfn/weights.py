"""The weights file of a prior-fitted network: ``<run>/checkpoints/pfn.safetensors``.

It holds the network's tensors (``PFNTransformer.state_dict()`` keys), for a regression PFN
also ``bar_borders``, and in the safetensors metadata ``format`` (``sennflow-pfn``),
``version``, ``prior``, ``task`` and ``architecture`` (the network's constructor arguments, as
JSON). ``model=pfn`` loads it through ``model.params.pretrained`` (a run folder, its
``checkpoints`` folder or the file); every problem is a :class:`PFNWeightsError` naming that key.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from components.models.pfn import PFN, PFNTransformer

FILE = "pfn.safetensors"
FORMAT = "sennflow-pfn"
BORDERS = "bar_borders"
_KEY = "model.params.pretrained"


class PFNWeightsError(ValueError):
    """A PFN weights path that is missing, unreadable, not a PFN's or does not fit the model."""


def save_pfn_weights(
    path: Path, net: PFNTransformer, *, prior: str, task: str, architecture: dict, borders=None
) -> Path:
    """Write ``net`` (and a regression PFN's bucket ``borders``) with its metadata to ``path``."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    if borders is not None:
        tensors[BORDERS] = borders.detach().cpu().contiguous()
    metadata = {
        "format": FORMAT,
        "version": "1",
        "prior": prior,
        "task": task,
        "architecture": json.dumps(architecture),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=metadata)
    return path


def resolve(source: str | Path) -> Path:
    """The weights file that ``source`` names: the file, or ``<source>/checkpoints/`` /
    ``<source>/`` ``pfn.safetensors``."""
    path = Path(source)
    for candidate in (path, path / "checkpoints" / FILE, path / FILE):
        if candidate.is_file():
            return candidate
    raise PFNWeightsError(
        f"{_KEY}={str(source)!r}: no PFN weights there (give a `sennflow pfn-train` run "
        f"folder, its checkpoints/ folder or its {FILE})"
    )


def read_pfn_weights(source: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """``(metadata with architecture as a dict, tensors)`` of the file ``source`` names."""
    path = resolve(source)
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
        tensors = load_file(str(path))
    except Exception as err:  # safetensors raises its own error types for corrupt files
        raise PFNWeightsError(f"{_KEY}={str(source)!r}: cannot read {path}: {err}") from err
    if metadata.get("format") != FORMAT:
        raise PFNWeightsError(
            f"{_KEY}={str(source)!r}: {path} is no PFN weights file (written by "
            "`sennflow pfn-train`)"
        )
    metadata["architecture"] = json.loads(metadata["architecture"])
    return metadata, tensors


def load_pfn_network(source: str | Path) -> tuple[PFNTransformer, dict, torch.Tensor | None]:
    """The fitted network (eval mode), its metadata and a regression PFN's borders."""
    metadata, tensors = read_pfn_weights(source)
    borders = tensors.pop(BORDERS, None)
    net = PFNTransformer(**metadata["architecture"])
    net.load_state_dict(tensors, strict=True)
    return net.eval(), metadata, borders


def load_into_model(model: PFN, source: str | Path) -> None:
    """Load the prior-fitted network ``source`` names into ``model`` (``model=pfn``).

    Raises:
        PFNWeightsError: the path is missing or unreadable, the PFN was fitted for regression,
            or its architecture differs from ``model``'s (each differing key named).
    """
    metadata, tensors = read_pfn_weights(source)
    if metadata["task"] != "classification":
        raise PFNWeightsError(
            f"{_KEY}={str(source)!r} was fitted on prior={metadata['prior']} for "
            f"{metadata['task']}; model=pfn classifies: fit one with "
            "`sennflow pfn-train prior=bnn`"
        )
    arch = metadata["architecture"]
    config = model.config
    ours = {
        "d_model": config.d_model,
        "nhead": config.nhead,
        "layers": config.layers,
        "d_ff": config.d_ff,
        "max_features": model.max_features,
        "max_classes": config.max_classes,
    }
    theirs = {**arch, "max_features": arch["num_features"], "max_classes": arch["outputs"]}
    wrong = [f"+model.params.{k}={theirs[k]} (not {v})" for k, v in ours.items() if theirs[k] != v]
    if wrong:
        raise PFNWeightsError(
            f"{_KEY}={str(source)!r} holds a PFN of another size: set " + ", ".join(wrong)
        )
    model.net.load_state_dict(tensors, strict=True)
