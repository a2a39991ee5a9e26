"""Self-supervised pre-training of a registered model's encoder (Barlow Twins, DirectPred, JEPA).

Imports only torch, numpy, scikit-learn, safetensors and :mod:`components.models`, so
:mod:`components.training` (the Ray Train loop and ``model.params.pretrained``) can use it.
"""
