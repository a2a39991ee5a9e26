"""X-NeSyL's knowledge graph (which parts make which class) and its SHAP-GED alignment metric.

Díaz-Rodríguez et al., "EXplainable Neural-Symbolic Learning (X-NeSyL) methodology to fuse deep
learning representations with expert knowledge graphs: the MonuMAI cultural heritage use case",
Information Fusion 2022; reference code github.com/JulesSanchez/X-NeSyL
(``utils/knowledge_graph.py``: ``knowledge_graph``, ``make_KG``, ``GED_metric``), read and
followed. The graph is bipartite, class nodes and part nodes, an edge where the expert says the
part belongs to the class; as a matrix it is ``+1`` on those (part, class) pairs, ``-1`` elsewhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml


@dataclass(frozen=True)
class KnowledgeGraph:
    """Which parts make which class.

    Attributes:
        classes: class names, in the model's class order.
        parts: part names; mask label ``k`` is ``parts[k-1]``.
        edges: bool ``(C, P)``: part ``p`` belongs to class ``c``.
    """

    classes: tuple[str, ...]
    parts: tuple[str, ...]
    edges: np.ndarray

    @classmethod
    def from_mapping(
        cls, class_parts: Mapping[str, Sequence[str]], classes: Sequence[str], parts: Sequence[str]
    ) -> KnowledgeGraph:
        """The graph of ``class: [parts]``, over the dataset's ``classes`` and ``parts``.

        Raises:
            ValueError: a class of the dataset is missing, or a class or part is unknown.
        """
        where = "train.xnesyl.graph"
        if not isinstance(class_parts, Mapping):
            raise ValueError(f"{where}: expected a mapping class: [parts...], got {class_parts!r}")
        missing = [c for c in classes if c not in class_parts]
        unknown = [c for c in class_parts if c not in classes]
        if missing or unknown:
            raise ValueError(
                f"{where}: classes missing {missing}, unknown {unknown}; the dataset's classes "
                f"are {list(classes)}"
            )
        edges = np.zeros((len(classes), len(parts)), bool)
        for c, name in enumerate(classes):
            names = class_parts[name]
            if not isinstance(names, list) or any(p not in parts for p in names):
                raise ValueError(
                    f"{where}: class {name!r} must list parts of the dataset, got {names!r}; "
                    f"its parts are {list(parts)}"
                )
            edges[c, [parts.index(p) for p in names]] = True
        return cls(tuple(classes), tuple(parts), edges)

    @classmethod
    def from_meta(cls, meta, graph: str = "auto") -> KnowledgeGraph:
        """The graph named by ``train.xnesyl.graph`` for a dataset's
        :class:`~components.data.reader.DatasetMeta`.

        Raises:
            ValueError: the dataset names no parts (not a parts dataset), or the graph is bad.
        """
        raw = meta.raw
        if "parts" not in raw:
            raise ValueError(
                "train.xnesyl needs a dataset whose meta names its parts (mask label k = "
                "parts[k-1]), as the parts source writes; this dataset has none"
            )
        classes, parts = list(meta.class_names), list(raw["parts"])
        if graph == "auto":
            if "class_parts" not in raw:
                raise ValueError(
                    "train.xnesyl.graph=auto needs the dataset's class_parts (the parts "
                    "source); give a YAML file of class: [parts...] instead"
                )
            mapping = dict(zip(classes, raw["class_parts"], strict=True))
        else:
            mapping = yaml.safe_load(Path(graph).read_text())
        return cls.from_mapping(mapping, classes, parts)

    @property
    def signs(self) -> torch.Tensor:
        """float ``(C, P)``: ``+1`` where the part belongs to the class, ``-1`` elsewhere."""
        return torch.from_numpy(np.where(self.edges, 1.0, -1.0).astype(np.float32))


def shap_ged(shap: torch.Tensor, edges: np.ndarray | torch.Tensor, threshold: float = 0.01):
    """The reference's SHAP-GED per sample: edges to add or delete between the graph SHAP
    induces and the knowledge graph restricted to that graph's nodes.

    For each sample, the SHAP graph links class ``c`` to part ``p`` where
    ``shap[c, p] >= threshold``; its nodes are the classes and parts with at least one such edge.
    The distance counts the knowledge graph's edges between those nodes that the SHAP graph
    lacks, plus the SHAP graph's edges the knowledge graph lacks (``GED_metric``'s
    ``distance(filter_KG(KG, FG), FG)``). The paper's metric is the mean over samples.

    Args:
        shap: ``(N, C, P)`` SHAP values of every part for every class's probability.
        edges: bool ``(C, P)`` knowledge graph.
        threshold: the reference's 0.01.

    Returns:
        float ``(N,)`` distances.
    """
    induced = shap >= threshold
    kg = torch.as_tensor(edges, dtype=torch.bool, device=shap.device)
    classes, parts = induced.any(dim=2), induced.any(dim=1)
    restricted = kg[None] & classes[:, :, None] & parts[:, None, :]
    return (restricted ^ induced).sum(dim=(1, 2)).float()
