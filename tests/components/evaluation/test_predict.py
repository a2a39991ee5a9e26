"""Batched inference: same logits as one eval-mode forward, mode restored."""

import pytest
import torch

from components.evaluation.predict import predict_logits
from components.models import create_model


def test_predict_logits_matches_eval_forward_and_restores_train_mode():
    torch.manual_seed(0)
    # the full-size MLP has dropout, so a train-mode forward would differ
    model = create_model("mlp", input_shape=(1, 8, 8), num_classes=10, hidden_sizes=(16,))
    x = torch.randn(23, 1, 8, 8)
    model.train()
    logits = predict_logits(model, x.numpy(), batch_size=7)
    assert model.training
    model.eval()
    with torch.no_grad():
        expected = model(x).logits
    assert logits.shape == (23, 10)
    assert not logits.requires_grad
    torch.testing.assert_close(logits, expected)


def test_predict_logits_rejects_bad_arguments():
    model = create_model("mlp", input_shape=(4,), num_classes=2, tiny=True)
    with pytest.raises(ValueError, match="batch_size"):
        predict_logits(model, torch.zeros(3, 4), batch_size=0)
    with pytest.raises(ValueError, match="x: expected a batch"):
        predict_logits(model, torch.zeros(4))
    with pytest.raises(TypeError, match="numpy array or torch tensor"):
        predict_logits(model, [[0.0] * 4])
