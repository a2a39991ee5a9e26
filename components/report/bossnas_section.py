"""The searched BossNAS architecture in the report's Search section: per block, the chosen path
and every candidate path's rating (its distance to the ensemble of all the block's paths)."""

from __future__ import annotations

from collections.abc import Mapping

from components.report import markup


def bossnas_parts(architecture: Mapping) -> list[str]:
    """HTML: one ratings table per block, the chosen (lowest) path highlighted."""
    parts = [
        "<h3>Searched architecture (BossNAS)</h3>",
        markup.paragraph(
            "Each block was trained without labels by ensemble bootstrapping, then every path "
            "through it (layers as op@level: conv = ResNet bottleneck, attn = self-attention "
            "bottleneck; level k works at 1/2^k of the input's resolution) was rated by its "
            "distance to the ensemble of all paths' target projections on the val split; the "
            "closest path (first row) was kept and the next block searched on top of it."
        ),
    ]
    for i, block in enumerate(architecture.get("ratings") or []):
        rows = [(row["path"], row["loss"]) for row in block]
        parts += [
            f"<h4>Block {i + 1}</h4>",
            markup.table(["path", "rating (lower: closer)"], rows, {0}),
        ]
    return parts
