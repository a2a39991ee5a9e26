"""``train.compile=true``: the model is compiled in place, trains as the eager one does, and its
checkpoints keep the eager parameter names."""

import pytest
import torch

from components.training.batches import ShardBatches
from components.training.checkpoint import ModelSpec, load_model
from components.training.config import TrainConfig
from components.training.fit import fit


def _train(tmp_path, compile_model: bool):
    torch.manual_seed(0)
    x, y = torch.randn(96, 3, 8, 8), torch.randint(0, 3, (96,))
    spec = ModelSpec("cnn", (3, 8, 8), 3, tiny=True)
    model, history, saved = spec.build(), [], tmp_path / f"compiled-{compile_model}"

    def report(metrics, folder):
        history.append(metrics["train_loss"])
        if folder is not None:
            import shutil

            shutil.copytree(folder, saved, dirs_exist_ok=True)

    cfg = TrainConfig(epochs=2, batch_size=32, compile=compile_model, early_stopping_patience=0)
    batches = ShardBatches(x, y, batch_size=32, shuffle=True)
    fit(model, batches, ShardBatches(x, y, batch_size=96, shuffle=False), cfg=cfg, spec=spec,
        report=report)  # fmt: skip
    return history, saved, model


@pytest.mark.slow
def test_compiled_training_matches_eager_and_checkpoints_keep_their_names(tmp_path):
    eager, eager_ckpt, eager_net = _train(tmp_path, False)
    compiled, compiled_ckpt, compiled_net = _train(tmp_path, True)
    # nn.Module.compile() compiles in place: the forward the fit loop called was dynamo's
    assert compiled_net._compiled_call_impl is not None and eager_net._compiled_call_impl is None
    assert compiled == pytest.approx(eager, rel=1e-4)
    eager_model, _ = load_model(eager_ckpt)
    compiled_model, _ = load_model(compiled_ckpt)  # strict load: the same keys, no _orig_mod.
    assert set(compiled_model.state_dict()) == set(eager_model.state_dict())
