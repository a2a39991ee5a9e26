"""Data-parallel SSL pre-training with shards of unequal size: every rank pads its shard to the
largest one (``equal_shard``, the supervised ``ShardBatches`` rule), so all ranks take the same
number of steps. Before, with 127 rows on 2 ranks at batch 32, rank 0 took 2 steps per epoch and
rank 1 one, and DDP's gradient all-reduce on rank 0 waited forever.

The two-rank run uses two plain processes over a gloo process group (what
``ray.train.torch.prepare_model`` sets up in the Ray workers), not Ray: a 2-worker
``TorchTrainer`` costs about 20 s."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from components.training.ssl_ray import check_workers, equal_shard

ROOT = Path(__file__).resolve().parents[3]
ROWS, WORLD, BATCH = 127, 2, 32  # shards of 64 and 63 rows: 2 and 1 full batches unpadded

RANK_SCRIPT = """
import json, sys
import torch, torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from components.ssl.config import SSLConfig
from components.ssl.learner import build_learner, train_ssl
from components.training.ssl_ray import divergence_check, equal_shard

rank, world, rows, batch, pad, init = sys.argv[1:]
rank, world, rows, batch = int(rank), int(world), int(rows), int(batch)
torch.set_num_threads(1)
dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
x = torch.randn(rows, 12, generator=torch.Generator().manual_seed(0))[rank::world]
if pad == "pad":
    x = equal_shard(x, rows, world)
cfg = SSLConfig(projector_width=8, batch_size=batch, epochs=2, seed=0)
_, net = build_learner("mlp", (12,), cfg, tiny=True)
steps = []
net.register_forward_pre_hook(lambda *_: steps.append(1))  # one DDP forward per step
ddp = DistributedDataParallel(net)
history = train_ssl(net, x, cfg, train_module=ddp, check=divergence_check(cfg))
print(json.dumps({"steps": len(steps), "epochs": len(history) - 1, "rows": len(x)}))
dist.destroy_process_group()
"""


def run_ranks(tmp_path: Path, pad: str, timeout_s: float) -> list[dict] | None:
    """Both ranks' ``{"steps", "epochs", "rows"}``, or None when they did not finish in time."""
    init = f"file://{tmp_path / 'rendezvous'}"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                RANK_SCRIPT,
                str(r),
                str(WORLD),
                str(ROWS),
                str(BATCH),
                pad,
                init,
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(WORLD)
    ]
    try:
        outs = [p.communicate(timeout=timeout_s) for p in procs]
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
            p.wait()
        return None
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-2000:]
    return [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]


def test_unequal_shards_pad_to_the_largest_and_both_ranks_step_equally(tmp_path):
    ranks = run_ranks(tmp_path, "pad", timeout_s=60)
    assert ranks is not None, "a rank hung in a collective"
    # 64 rows each after padding: 2 full batches of 32 per epoch, 2 epochs, on both ranks
    assert ranks == [{"steps": 4, "epochs": 2, "rows": 64}] * 2


def test_equal_shard_repeats_only_what_the_supervised_padding_does():
    x = torch.arange(ROWS)
    shards = [equal_shard(x[r::WORLD], ROWS, WORLD) for r in range(WORLD)]
    assert [len(s) for s in shards] == [64, 64]
    assert torch.equal(shards[0], x[0::2])  # the larger shard is untouched
    assert torch.equal(shards[1], torch.cat([x[1::2], x[1:2]]))  # its own first row, once
    # ShardBatches(pad_to=ceil(N / world)) repeats world * ceil(N / world) - N = 1 row per epoch
    assert sorted(torch.cat(shards).tolist()) == sorted([*range(ROWS), 1])


def test_a_worker_left_fewer_than_two_rows_is_refused_naming_the_key():
    with pytest.raises(ValueError, match=r"ssl.num_workers=4 leaves a worker fewer than 2 rows"):
        check_workers(3, 4)
    with pytest.raises(ValueError, match=r"ssl.num_workers=4 .* of the 4-row training split"):
        equal_shard(torch.zeros(1, 5), 4, 4)  # one row per shard: BatchNorm cannot train on it
    with pytest.raises(ValueError, match=r"ssl.num_workers=1 .* of the 1-row"):
        check_workers(1, 1)
    check_workers(5, 4)  # shards of 2, 1, 1, 1 rows, each padded to 2
