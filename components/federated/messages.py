"""Client/server messages as bytes: safetensors, never pickle.

Updates travel as a flat ``{name: tensor}`` dict serialised with safetensors (a JSON header plus
raw buffers), so decoding cannot run code and the byte count of a message is exactly what a round
sends. A prototype update (Hendryx et al. 2021, Federated Reconnaissance) is the tensors ``sums``
(C, D) and ``counts`` (C,).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load, save

SUMS = "sums"
COUNTS = "counts"


def encode(tensors: Mapping[str, torch.Tensor]) -> bytes:
    """Serialise a dict of tensors to safetensors bytes (detached, on the CPU, own storage).

    Raises:
        ValueError: if a key is not a string or a value is not a tensor.
    """
    for key, value in tensors.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise ValueError(f"message entries must be str -> Tensor, got {key!r}: {type(value)}")
    # clone(): safetensors refuses tensors that share storage (e.g. tied weights).
    return save({k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()})


def decode(data: bytes) -> dict[str, torch.Tensor]:
    """Read back a dict of tensors written by :func:`encode`.

    Raises:
        ValueError: if the bytes are not a valid safetensors message.
    """
    try:
        return load(bytes(data))
    except (SafetensorError, ValueError, TypeError) as err:
        raise ValueError(f"not a valid safetensors message ({len(data)} bytes): {err}") from err


def save_message(path: str | Path, tensors: Mapping[str, torch.Tensor]) -> Path:
    """Write ``tensors`` to ``path`` as a ``.safetensors`` file, atomically.

    The bytes go to a temporary file in the same folder, are flushed to disk, then renamed over
    ``path``, so a crash or a kill leaves either the old file or the new one, never half of one.

    Raises:
        ValueError: as :func:`encode`.
    """
    path = Path(path)
    data = encode(tensors)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def message_bytes(tensors: Mapping[str, torch.Tensor]) -> int:
    """Size in bytes of the encoded message, i.e. what sending ``tensors`` costs."""
    return len(encode(tensors))


def prototype_update(
    sums: np.ndarray, counts: np.ndarray, dtype: torch.dtype = torch.float32
) -> dict[str, torch.Tensor]:
    """Tensors of a prototype update: sums as ``dtype`` (float32 halves the bytes), int64 counts."""
    return {
        SUMS: torch.as_tensor(np.asarray(sums)).to(dtype),
        COUNTS: torch.as_tensor(np.asarray(counts)).to(torch.int64),
    }


def read_prototype_update(tensors: Mapping[str, torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
    """``(sums, counts)`` as float64 / int64 numpy arrays from decoded prototype-update tensors.

    Raises:
        ValueError: if ``sums`` or ``counts`` is missing.
    """
    if SUMS not in tensors or COUNTS not in tensors:
        raise ValueError(f"a prototype update needs {SUMS!r} and {COUNTS!r}, got {sorted(tensors)}")
    return tensors[SUMS].double().numpy(), tensors[COUNTS].long().numpy()


def save_states(folder: str | Path, states: Mapping[str, Mapping[str, torch.Tensor]]) -> list[Path]:
    """Save each strategy's final global state as ``folder/<strategy>.safetensors`` (atomically,
    as :func:`save_message`); ``folder`` is created if missing."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return [save_message(folder / f"{name}.safetensors", state) for name, state in states.items()]
