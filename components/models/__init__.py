"""Model registry and the models it holds; importing this package registers every model."""

from components.models import cnn, mlp, proto_ae  # noqa: F401  (imported to register)
from components.models.base import (
    ModelOutput,
    PrototypeExplanation,
    PrototypeModel,
    SennModel,
    create_model,
    list_models,
    register_model,
)

__all__ = [
    "ModelOutput",
    "PrototypeExplanation",
    "PrototypeModel",
    "SennModel",
    "create_model",
    "list_models",
    "register_model",
]
