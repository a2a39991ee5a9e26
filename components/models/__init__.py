"""Model registry and the models it holds; importing this package registers every model."""

from components.models import (  # noqa: F401  (imported to register)
    bossnas_net,
    cbc,
    cct,
    cnn,
    darts_net,
    mlp,
    mlp_scaled,
    pfn,
    prob_psenn,
    proto_ae,
    protopnet,
    resnet,
    skan,
    st_protopnet,
    tell,
)
from components.models.base import (
    ModelOutput,
    PrototypeExplanation,
    PrototypeModel,
    SennModel,
    SoftTargetsError,
    create_model,
    list_models,
    register_model,
)

__all__ = [
    "ModelOutput",
    "PrototypeExplanation",
    "PrototypeModel",
    "SennModel",
    "SoftTargetsError",
    "create_model",
    "list_models",
    "register_model",
]
