"""Reading ``torch.save`` files without unpickling code, with a one-line reason when that fails.

``torch.load(weights_only=True)`` refuses anything but tensors and plain values, which is what
sennflow wants of a weights file or a checkpoint it did not write itself; but torch's message
for a refused or corrupt file is a paragraph that recommends ``weights_only=False``, the one
thing that must not be done with a file of unknown origin. :func:`load_tensors` says instead
what is wrong with the file.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch

# The specific cause inside torch's weights-only message: a blocked global, or an opcode.
_GLOBAL = re.compile(r"unsupported GLOBAL (\S+)")
_OPERAND = re.compile(r"Unsupported operand \d+")


class TorchFileError(ValueError):
    """A file ``torch.load(weights_only=True)`` cannot read; the message is one line."""


def load_tensors(path: str | Path) -> object:
    """``torch.load(path, weights_only=True)`` onto the CPU.

    Raises:
        TorchFileError: the file is missing, corrupt, not a ``torch.save`` file, or holds code
            (a pickled function or class), saying which.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise TorchFileError(_unpickling_reason(str(err))) from err
    except Exception as err:  # zip, I/O and storage errors of many types for corrupt files
        first = str(err).split(". ")[0]  # torch's zip errors go on for sentences
        raise TorchFileError(f"{type(err).__name__}: {first}") from err


def _unpickling_reason(message: str) -> str:
    refused = _GLOBAL.search(message)
    if refused:
        return (
            f"it holds code ({refused.group(1)}), which is never unpickled here: save only "
            "tensors, e.g. torch.save(model.state_dict(), path)"
        )
    if _OPERAND.search(message):
        return "not a file torch.save wrote (no zip archive or pickle of tensors)"
    return message.splitlines()[0]
