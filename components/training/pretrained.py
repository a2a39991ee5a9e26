"""Load ImageNet-pretrained weights into a model's torchvision trunk, offline first.

``model.params.pretrained`` names either

* a file: a state dict saved with ``torch.save`` (``.pth``/``.pt``/``.bin``, read with
  ``weights_only=True``, so no code is unpickled) or a ``.safetensors`` file; the torchvision
  download of the whole classifier (e.g. ``resnet18-f37072fd.pth``) is the usual one, its head
  (``fc.*`` / ``classifier.*``) is set aside; or
* a folder holding one file per trunk, named for it (``resnet18.pth``, ``vgg11.safetensors``,
  ...): the file of the model's own trunk is loaded, so a sweep whose search space chooses
  ``model.backbone`` gives every trial the weights of the trunk it drew; or
* a torchvision weights name (``IMAGENET1K_V1``, ``IMAGENET1K_V2``, ``DEFAULT``), fetched by
  torchvision into its cache (``$TORCH_HOME/hub/checkpoints``) unless already there. Without a
  network this fails at once, with the command that gets the file onto the machine; or
* an SSL checkpoint folder written by ``sennflow pretrain`` (it holds ``ssl.json``): its encoder
  is loaded into the model's encoder, conv trunk or hidden layers
  (:mod:`components.ssl.checkpoint`), for any model that has one, torchvision trunk or not;
* for ``model=pfn``: a ``sennflow pfn-train`` run folder or its ``pfn.safetensors``, the
  prior-fitted network (:mod:`components.pfn.weights`).

Every key of the trunk must be in the file with its shape, or the load fails naming the first
mismatched keys: a ResNet-50 file given to a ResNet-18 trunk is an error, not a silent partial
load.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from components.models.pfn import PFN
from components.pfn.weights import PFNWeightsError, load_into_model
from components.ssl.checkpoint import SSLCheckpointError, is_ssl_checkpoint, load_encoder_into
from components.ssl.encoders import EncoderError
from components.training.errors import ModelSpecError
from components.training.torch_files import load_tensors

_FILE_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")
_SHOWN_KEYS = 5


class PretrainedError(ModelSpecError):
    """Pretrained weights that cannot be found, read or loaded into the trunk."""


def load_pretrained(model: nn.Module, source: str) -> None:
    """Load ``source`` (a weights file or a torchvision weights name) into ``model.features``.

    Raises:
        PretrainedError: the file is missing or unreadable, the name unknown or not
            downloadable here, or the weights do not fit the trunk.
    """
    if is_ssl_checkpoint(source):
        _load_ssl(model, source)
        return
    if isinstance(model, PFN):  # a prior-fitted network (sennflow pfn-train)
        try:
            load_into_model(model, source)
        except PFNWeightsError as err:
            raise PretrainedError(str(err)) from err
        return
    trunk = getattr(model, "features", None)
    arch = getattr(trunk, "arch", None)
    if arch is None:
        raise PretrainedError(
            f"model.params.pretrained={source!r}: {type(model).__name__} has no torchvision "
            "trunk to load it into (set model.params.backbone=resnet18, vgg16, ...)"
        )
    state = read_state_dict(source, arch)
    load_into_trunk(trunk, state, source)


def _load_ssl(model: nn.Module, source: str) -> None:
    try:
        load_encoder_into(model, source)
    except (SSLCheckpointError, EncoderError) as err:
        raise PretrainedError(str(err)) from err


def read_state_dict(source: str, arch: str) -> dict[str, torch.Tensor]:
    """The tensors of a weights file, of the ``arch`` file in a folder of per-trunk files, or
    of torchvision's ``arch`` weights called ``source``."""
    if Path(source).is_dir():
        return _read_file(trunk_file(Path(source), arch))
    if Path(source).suffix.lower() in _FILE_SUFFIXES or Path(source).exists():
        return _read_file(Path(source))
    return _torchvision_weights(source, arch)


def trunk_file(folder: Path, arch: str) -> Path:
    """The weights file of trunk ``arch`` in ``folder``: ``<arch>.pth`` (``.pt``, ``.bin``,
    ``.safetensors``).

    Raises:
        PretrainedError: naming the file names looked for, when none or several are there.
    """
    names = [f"{arch}{suffix}" for suffix in _FILE_SUFFIXES]
    found = [folder / name for name in names if (folder / name).is_file()]
    if len(found) != 1:
        problem = "several weights files" if found else "no weights file"
        raise PretrainedError(
            f"model.params.pretrained={str(folder)!r} is a folder of per-trunk weights with "
            f"{problem} for the {arch} trunk: expected exactly one of {', '.join(names)} "
            "(save each trunk's state dict under its backbone's name)"
        )
    return found[0]


def load_into_trunk(trunk: nn.Module, state: dict, source: str) -> None:
    """Copy ``state`` into ``trunk``: every trunk key with its shape, head keys ignored.

    Raises:
        PretrainedError: naming the first missing, unexpected or mis-shaped keys.
    """
    own = trunk.state_dict()
    state = _unwrapped(state, own)
    state = {k: v for k, v in state.items() if not k.startswith(tuple(trunk.head_prefixes))}
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or shapes:
        raise PretrainedError(
            f"model.params.pretrained={source!r} does not fit a {trunk.arch} trunk: "
            + "; ".join(
                f"{label} ({len(keys)}): {', '.join(keys[:_SHOWN_KEYS])}"
                for label, keys in (
                    ("missing keys", missing),
                    ("unexpected keys", unexpected),
                    ("shape mismatches (file vs trunk)", shapes),
                )
                if keys
            )
        )
    trunk.load_state_dict(state, strict=True)


def _unwrapped(state: dict, own: dict) -> dict:
    """``state`` without the prefixes all its keys share (``module.`` of DDP, ``model.`` of a
    Lightning checkpoint, ``backbone.`` or ``encoder.`` of self-supervised libraries), as many
    as bring its keys closest to the trunk's ``own`` (none when none does)."""
    candidates = [state]
    while all("." in key for key in state) and len({k.split(".", 1)[0] for k in state}) == 1:
        state = {key.split(".", 1)[1]: value for key, value in state.items()}
        candidates.append(state)
    return max(candidates, key=lambda c: len(c.keys() & own.keys()))  # the first of a tie


def check_weights_file(source: str | Path) -> None:
    """:class:`PretrainedError` when ``source`` names a weights file (``.pth``, ``.pt``,
    ``.bin``, ``.safetensors``) that is not there; what needs the model (its trunk, a
    torchvision weights name) is checked when the model is built."""
    path = Path(source)
    if path.suffix.lower() in _FILE_SUFFIXES and not path.is_file():
        raise PretrainedError(f"model.params.pretrained: no weights file at {path}")


def _read_file(path: Path) -> dict[str, torch.Tensor]:
    check_weights_file(path)
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = load_tensors(path)
    except Exception as err:  # safetensors raises many types for corrupt files
        raise PretrainedError(f"cannot read weights file {path}: {err}") from err
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise PretrainedError(f"weights file {path} does not hold a state dict of tensors")
    return state


def _torchvision_weights(name: str, arch: str) -> dict[str, torch.Tensor]:
    from torchvision.models import get_model_weights

    weights = get_model_weights(arch)
    try:
        entry = weights[name] if name != "DEFAULT" else weights.DEFAULT
    except KeyError:
        names = ", ".join(w.name for w in weights)
        raise PretrainedError(
            f"model.params.pretrained={name!r}: not a file, and {arch} has no torchvision "
            f"weights of that name (it has {names}, DEFAULT)"
        ) from None
    try:
        return entry.get_state_dict(progress=False)
    except OSError as err:  # URLError is an OSError: no network, proxy refused, DNS failure
        raise PretrainedError(
            f"model.params.pretrained={name!r}: torchvision cannot download {entry.url} here "
            f"({err}). On a machine with internet run `curl -LO {entry.url}`, copy the file to "
            f"this machine and pass +model.params.pretrained=/path/to/{Path(entry.url).name}, "
            f"or put it in {_hub_dir()} where torchvision looks first"
        ) from err


def _hub_dir() -> str:
    return str(Path(torch.hub.get_dir()) / "checkpoints")
