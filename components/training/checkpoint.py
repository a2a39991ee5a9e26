"""Checkpoint folders: weights as safetensors, training state loadable with ``weights_only=True``.

A checkpoint folder holds ``model.safetensors`` (weights), ``model.json`` (how to rebuild the
model: registry name, shapes, kwargs) and ``state.pt`` (optimiser, scheduler, epoch counters and the
metric history; only tensors and plain Python values, so ``torch.load(weights_only=True)`` reads it
and never unpickles code).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from components.models import create_model
from components.ssl.checkpoint import is_ssl_checkpoint
from components.training import pretrained
from components.training.errors import ModelSpecError
from components.training.torch_files import TorchFileError, load_tensors

WEIGHTS = "model.safetensors"
SPEC = "model.json"
STATE = "state.pt"


class CheckpointError(ValueError):
    """A checkpoint folder is missing, incomplete, corrupt or does not fit the model."""


@dataclass(frozen=True)
class ModelSpec:
    """How to rebuild a registered model; stored next to its weights.

    ``encoder_from`` names the SSL checkpoint folder (``sennflow pretrain``) whose encoder
    initialised the model; it is kept apart from the model's own ``kwargs`` so a checkpoint
    still rebuilds after that folder is gone (its weights replace the encoder's anyway).
    """

    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    tiny: bool = False
    kwargs: dict = field(default_factory=dict)
    encoder_from: str | None = None

    @classmethod
    def configured(
        cls, name: str, input_shape, num_classes: int, *, tiny: bool, params: dict
    ) -> ModelSpec:
        """The spec of ``model.params``: a ``pretrained`` SSL checkpoint folder becomes
        ``encoder_from`` (it is no model keyword), anything else stays a keyword."""
        kwargs = dict(params)
        encoder_from = None
        if is_ssl_checkpoint(str(kwargs.get("pretrained") or "")):
            encoder_from = str(kwargs.pop("pretrained"))
        return cls(name, tuple(input_shape), int(num_classes), tiny, kwargs, encoder_from)

    def build(self, *, load_pretrained: bool = True) -> torch.nn.Module:
        """Create the (untrained) model this spec describes.

        Args:
            load_pretrained: load the trunk weights that ``kwargs["pretrained"]`` (or the
                encoder that ``encoder_from``) names (:mod:`components.training.pretrained`);
                ``False`` when a checkpoint's weights replace them anyway.

        Raises:
            ModelSpecError: naming the model and what is wrong with its parameters or input
                (``PretrainedError``, a subclass, for weights that cannot be loaded).
        """
        model = self._create()
        source = self.encoder_from or self.kwargs.get("pretrained")
        if load_pretrained and source:
            pretrained.load_pretrained(model, str(source))
        return model

    def _create(self) -> torch.nn.Module:
        try:
            return create_model(
                self.name,
                input_shape=self.input_shape,
                num_classes=self.num_classes,
                tiny=self.tiny,
                **self.kwargs,
            )
        except (KeyError, TypeError, ValueError) as err:
            message = err.args[0] if err.args else str(err)
            raise ModelSpecError(
                f"cannot build model {self.name!r} (tiny={self.tiny}, params {self.kwargs}) for "
                f"input {self.input_shape} with {self.num_classes} classes: {message}"
            ) from err


def save_checkpoint(folder: Path, model: torch.nn.Module, spec: ModelSpec, state: dict) -> Path:
    """Write weights, spec and training state into ``folder`` (created if missing)."""
    folder.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(weights, str(folder / WEIGHTS))
    (folder / SPEC).write_text(json.dumps(asdict(spec), indent=2))
    torch.save(state, folder / STATE)
    return folder


def load_spec(folder: str | Path) -> ModelSpec:
    """Read the model spec of a checkpoint, with a clear error for a bad folder."""
    folder = Path(folder)
    if folder.is_file():
        raise CheckpointError(
            f"checkpoint {folder} is a file; name the checkpoint folder that holds it "
            f"({folder.parent}: {WEIGHTS}, {SPEC} and {STATE})"
        )
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint folder {folder} does not exist")
    missing = [name for name in (WEIGHTS, SPEC, STATE) if not (folder / name).is_file()]
    if missing:
        raise CheckpointError(f"checkpoint {folder} is incomplete: missing {', '.join(missing)}")
    try:
        raw = json.loads((folder / SPEC).read_text())
        return ModelSpec(
            name=raw["name"],
            input_shape=tuple(raw["input_shape"]),
            num_classes=int(raw["num_classes"]),
            tiny=bool(raw.get("tiny", False)),
            kwargs=dict(raw.get("kwargs", {})),
            encoder_from=raw.get("encoder_from"),
        )
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"checkpoint {folder / SPEC} is malformed: {err}") from err


def load_weights(folder: str | Path, model: torch.nn.Module) -> None:
    """Load ``model.safetensors`` into ``model`` (strict: every key and shape must match)."""
    path = Path(folder) / WEIGHTS
    try:
        weights = load_file(str(path))
    except Exception as err:  # safetensors raises its own error types for corrupt headers
        raise CheckpointError(f"cannot read weights {path}: {err}") from err
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"weights in {path} do not fit the model: {err}") from err


def load_state(folder: str | Path) -> dict:
    """Load the training state (``weights_only=True``: no code is unpickled)."""
    path = Path(folder) / STATE
    try:
        return load_tensors(path)
    except TorchFileError as err:
        raise CheckpointError(f"cannot read training state {path}: {err}") from err


def load_model(folder: str | Path) -> tuple[torch.nn.Module, ModelSpec]:
    """Rebuild a model from a checkpoint folder and load its weights (eval mode)."""
    spec = load_spec(folder)
    model = spec.build(load_pretrained=False)
    load_weights(folder, model)
    return model.eval(), spec
