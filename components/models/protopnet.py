"""ProtoPNet: "This Looks Like That: Deep Learning for Interpretable Image Recognition"
(Chen, Li, Tao, Barnett, Su, Rudin, NeurIPS 2019).

A conv backbone ``f`` and add-on 1x1 convs (ReLU, then sigmoid) map an image to a latent grid
``z`` of shape ``(D, h, w)``. Each of the ``m_k`` prototypes per class is a 1x1 latent patch
``p_j``; its squared L2 distance to every patch (by convolution, ``|z|^2 - 2 z.p + |p|^2``) is
min-pooled over the grid and turned into a similarity ``log((d + 1) / (d + 1e-4))``. The last
layer ``h`` (no bias) maps similarities to logits, so ``logit_c = sum_j sim_j * w[c, j]``
exactly; it starts at +1 for a prototype's own class and -0.5 for the others (paper, sec. 2.2).

Loss (paper, eq. for stage 1; reference-code coefficients)::

    total = CE + 0.8 * cluster - 0.08 * separation + 1e-4 * L1

``cluster``: batch mean of each sample's smallest distance to a prototype of its class;
``separation``: the same to prototypes of other classes; ``L1``: L1 norm of the last-layer
weights from prototypes to classes other than their own.

Schedule (:meth:`ProtoPNet.training_stages`, paper sec. 2.2 and reference settings): warm-up
(add-on layers and prototypes; backbone frozen), then push cycles of joint training (backbone,
add-on, prototypes; the last layer stays at its initialisation) followed by a push and
last-layer-only training, one cycle per 10 epochs after the warm-up as the paper pushes every
10 epochs. Epoch shares: 10% warm-up, 20% last layer (over all cycles), the rest joint. A single
push at the end is not enough here: the prototypes that no sample uses drift off during joint
training and are pushed onto background-like patches (digits test accuracy 0.72-0.97 over
seeds 0-4, last layer at 1e-4); cycles let the network adapt to pushed prototypes, as in the
paper (0.985-0.993 with the same rates).

Learning rates are multiples of the run's base rate; ``train.lr=3e-3`` is the paper's add-on
and prototype rate. Two paper rates are not kept:

* backbone 1e-4 fine-tunes an ImageNet-pretrained trunk; ours is trained from scratch, so the
  joint stage trains it at the base rate (digits seeds 0-2: 0.978-0.989 test accuracy against
  0.967-0.989 at 1e-4; ``parts``: 1.000 against 0.996);
* last layer 1e-4 runs for 20 epochs of hundreds of steps in the paper; here a last-layer stage
  is 2-3 epochs of ~20 steps, in which Adam at 1e-4 moves a weight by at most ~0.006 and the
  stage does nothing. At the base rate, 4-class ``parts`` (32x32, ``backbone_pools=2``, 60
  epochs, seed 0) reaches 1.000 test accuracy against 0.898; digits do not change.

Shrunk for 2 CPU cores: the pretrained VGG/ResNet/DenseNet is replaced by three from-scratch
conv blocks (:class:`~components.models.backbones.ConvBackbone`; an 8x8 digit becomes a 4x4
grid of 64-d patches), and ``D = 64`` instead of 128; the paper's 10 prototypes per class are
kept. On sklearn digits (standardised, 70/15/15 split), the default config with Adam, base lr
3e-3, batch 64, 60 epochs and a per-stage cosine schedule reaches 0.978-0.996 test accuracy
over seeds 0-4 in about 9 s per run on one CPU thread.

``backbone_genotype`` replaces the conv trunk by a searched DARTS architecture (Liu, Simonyan &
Yang, ICLR 2019): the stem and cells of the derived network,
:class:`~components.models.nas_cells.GenotypeBackbone`, with GroupNorm instead of BatchNorm so
that pushed prototypes stay exact latent patches (its docstring gives the reason). Its two
reduction cells halve the grid twice (8x8 -> 2x2); ``backbone_channels`` and
``backbone_pools`` are then unused.

The paper's setting, on real images: ``backbone`` names a torchvision trunk (``resnet18/34/50``,
``vgg11/16/19``, ``densenet121``; :mod:`components.models.trunks`) and ``pretrained`` the
ImageNet weights to start from (a file or a torchvision weights name, loaded by
:mod:`components.training.pretrained`). With a pretrained trunk the paper's rates apply: the
joint stage trains the trunk at 1e-4 against 3e-3 for the add-on layers and prototypes, i.e.
``features_lr_scale = 1/30`` of the base rate ``train.lr=3e-3`` (the default when ``pretrained``
is set), and ``D = 128`` (the default with a torchvision trunk). BatchNorm layers of a trunk
that a stage does not train keep their running statistics (the fit loop puts them in eval
mode), so the warm-up does not disturb the pretrained statistics and pushed prototypes stay
the exact latent patches they were copied from while the last layer trains.

Signals ``(C, L)`` work with the conv trunk, in 1-D convolutions: the latent grid is
``(D, 1, l)``, so a prototype is a patch of ``l``'s positions and push, explanations and the
gallery use the same code as for images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from components.models.base import (
    ModelOutput,
    PrototypeExplanation,
    PrototypeModel,
    PushCandidates,
    TrainingStage,
    check_batch,
    check_build_args,
    override_config,
    positive_ints,
    register_model,
)
from components.models.nas_cells import GenotypeBackbone
from components.models.nas_ops import Genotype, coerce_genotype
from components.models.trunks import TORCHVISION_TRUNKS, TRUNKS, build_trunk

EPSILON = 1e-4  # the paper's epsilon in log((d + 1) / (d + epsilon))
# The paper's joint-stage rates for a pretrained trunk: features 1e-4, add-on and prototypes 3e-3.
PRETRAINED_FEATURES_LR_SCALE = 1e-4 / 3e-3


@dataclass(frozen=True)
class ProtoPNetConfig:
    """Hyperparameters of :class:`ProtoPNet`.

    Attributes:
        prototypes_per_class: ``m_k`` (paper: 10).
        prototype_dim: channels ``D`` of the latent grid and of each prototype (paper: 128);
            ``None``: 128 with a torchvision trunk, 64 with the conv trunk.
        backbone: ``conv`` (small, from scratch) or a torchvision trunk (``resnet18``,
            ``resnet34``, ``resnet50``, ``vgg11``, ``vgg16``, ``vgg19``, ``densenet121``).
        pretrained: ImageNet weights for a torchvision trunk: a ``.pth``/``.safetensors`` file
            or a torchvision weights name (e.g. ``IMAGENET1K_V1``); ``None``: from scratch.
        backbone_channels: output channels of each conv block of the backbone.
        backbone_pools: how many backbone blocks halve the grid (1: 8x8 -> 4x4; 2 suits 32x32).
        cluster_weight: coefficient of the cluster cost (paper: 0.8).
        separation_weight: coefficient of the separation cost, subtracted (paper: 0.08).
        l1_weight: coefficient of the wrong-class last-layer L1 norm (paper: 1e-4).
        incorrect_class_connection: initial last-layer weight to other classes (paper: -0.5).
        warm_up_fraction: share of the epochs for the warm-up stage.
        last_layer_fraction: share of the epochs for the last-layer stages (all cycles).
        push_interval: epochs per push cycle after the warm-up (paper: a push every 10).
        features_lr_scale: joint-stage backbone LR as a multiple of the base LR; ``None``: 1
            from scratch, the paper's 1e-4 / 3e-3 with a pretrained trunk.
        last_layer_lr_scale: last-layer LR as a multiple of the base LR (see the module notes).
        backbone_genotype: a searched DARTS genotype (its ``to_dict`` form, as in a sweep's
            ``genotype.json``) whose cells replace the conv backbone; ``None``: conv backbone.
        backbone_genotype_channels: stem channels of the genotype backbone.
        backbone_genotype_cells: cells of the genotype backbone (>= 3).
    """

    prototypes_per_class: int = 10
    prototype_dim: int | None = None
    backbone: str = "conv"
    pretrained: str | None = None
    backbone_channels: tuple[int, ...] = (32, 64, 64)
    backbone_pools: int = 1
    cluster_weight: float = 0.8
    separation_weight: float = 0.08
    l1_weight: float = 1e-4
    incorrect_class_connection: float = -0.5
    warm_up_fraction: float = 0.1
    last_layer_fraction: float = 0.2
    push_interval: int = 10
    features_lr_scale: float | None = None
    last_layer_lr_scale: float = 1.0
    backbone_genotype: Genotype | None = None
    backbone_genotype_channels: int = 8
    backbone_genotype_cells: int = 3

    def __post_init__(self) -> None:
        check_prototype_config(self)

    @property
    def latent_dim(self) -> int:
        """``prototype_dim``, or its default for the trunk: 128 (torchvision), 64 (conv)."""
        if self.prototype_dim is not None:
            return self.prototype_dim
        return 128 if self.backbone in TORCHVISION_TRUNKS else 64

    @classmethod
    def tiny(cls) -> ProtoPNetConfig:
        """The small variant used by tests."""
        return cls(prototypes_per_class=2, prototype_dim=8, backbone_channels=(8,))


def features_lr_scale(config) -> float:
    """The joint-stage trunk rate of a ProtoPNet-style config: ``features_lr_scale``, or by
    default the paper's 1e-4 / 3e-3 for a pretrained trunk and 1 from scratch."""
    if config.features_lr_scale is not None:
        return config.features_lr_scale
    return PRETRAINED_FEATURES_LR_SCALE if config.pretrained else 1.0


def check_prototype_config(config) -> None:
    """Validate the fields that ProtoPNet-style configs share.

    Raises:
        ValueError: naming the first bad field.
    """
    name = type(config).__name__
    if config.backbone not in TRUNKS:
        raise ValueError(f"{name}.backbone={config.backbone!r}: choose from {list(TRUNKS)}")
    if config.pretrained and config.backbone not in TORCHVISION_TRUNKS:
        raise ValueError(
            f"{name}.pretrained needs a torchvision backbone ({', '.join(TORCHVISION_TRUNKS)}); "
            f"backbone={config.backbone!r} is trained from scratch"
        )
    positive_ints(config, "backbone_channels")
    for field in ("prototypes_per_class", "prototype_dim", "push_interval"):
        if getattr(config, field) is not None and int(getattr(config, field)) < 1:
            raise ValueError(f"{name}.{field} must be >= 1, got {getattr(config, field)}")
    if not 0 <= config.backbone_pools <= len(config.backbone_channels):
        raise ValueError(
            f"{name}.backbone_pools must be in [0, {len(config.backbone_channels)}], "
            f"got {config.backbone_pools}"
        )
    fractions = (config.warm_up_fraction, config.last_layer_fraction)
    if min(fractions) < 0 or sum(fractions) >= 1:
        raise ValueError(
            f"{name}: warm_up_fraction and last_layer_fraction must be >= 0 with a sum below 1, "
            f"got {fractions}"
        )
    for field in ("features_lr_scale", "last_layer_lr_scale"):
        if getattr(config, field) is not None and getattr(config, field) <= 0:
            raise ValueError(f"{name}.{field} must be > 0, got {getattr(config, field)}")
    if config.backbone_genotype is not None:
        genotype = coerce_genotype(config.backbone_genotype, param="model.params.backbone_genotype")
        object.__setattr__(config, "backbone_genotype", genotype)
    if config.backbone_genotype_channels < 1 or config.backbone_genotype_cells < 3:
        raise ValueError(
            f"{name}: backbone_genotype_channels must be >= 1 and backbone_genotype_cells >= 3 "
            f"(two reduction cells), got {config.backbone_genotype_channels} and "
            f"{config.backbone_genotype_cells}"
        )


def build_backbone(input_shape: tuple[int, ...], config) -> nn.Module:
    """The feature trunk of a ProtoPNet-style config: ``config.backbone`` (the conv backbone or
    a torchvision trunk), or the searched DARTS cells of ``config.backbone_genotype`` (with
    GroupNorm; see :class:`GenotypeBackbone`).

    Raises:
        ValueError: the trunk does not fit ``input_shape``.
    """
    if config.backbone_genotype is None:
        return build_trunk(
            config.backbone, input_shape, config.backbone_channels, config.backbone_pools
        )
    if len(input_shape) != 3:
        raise ValueError(f"backbone_genotype needs image input (C, H, W), got {input_shape}")
    return GenotypeBackbone(
        input_shape[0],
        config.backbone_genotype,
        channels=config.backbone_genotype_channels,
        cells=config.backbone_genotype_cells,
        norm="group",
    )


@dataclass
class ProtoPNetOutput(ModelOutput):
    """:class:`ProtoPNet` forward output.

    Attributes:
        min_distances: each prototype's squared distance to its closest latent patch, ``(N, P)``.
        similarities: ``log((d + 1) / (d + 1e-4))`` of ``min_distances``, ``(N, P)``.
    """

    min_distances: torch.Tensor
    similarities: torch.Tensor


def l2_distance_maps(latent: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """Squared L2 distance of every prototype to every latent patch, ``(N, P, h, w)``.

    Computed as ``|z|^2 - 2 z.p + |p|^2`` with a 1x1 convolution (the paper's trick; one conv
    instead of an ``N*P*h*w*D`` difference tensor), clamped at 0 against rounding. Always fp32:
    under bf16 autocast the expansion cancels catastrophically.
    """
    with torch.autocast(latent.device.type, enabled=False):
        latent, prototypes = latent.float(), prototypes.float()
        z2 = latent.pow(2).sum(dim=1, keepdim=True)
        zp = F.conv2d(latent, prototypes[:, :, None, None])
        p2 = prototypes.pow(2).sum(dim=1)[None, :, None, None]
        return (z2 - 2 * zp + p2).clamp(min=0)


def log_similarity(distances: torch.Tensor) -> torch.Tensor:
    """ProtoPNet's similarity ``log((d + 1) / (d + 1e-4))``: large near 0, decreasing in ``d``."""
    return torch.log((distances + 1) / (distances + EPSILON))


def prototype_class_ids(num_classes: int, per_class: int) -> torch.Tensor:
    """The class of each prototype, ``(num_classes * per_class,)``: ``[0]*m_k + [1]*m_k + ...``."""
    return torch.arange(num_classes).repeat_interleave(per_class)


def class_connection_init(
    prototype_class: torch.Tensor, num_classes: int, incorrect: float
) -> torch.Tensor:
    """Last-layer weights ``(C, P)``: 1 from a prototype to its class, ``incorrect`` elsewhere."""
    own = torch.arange(num_classes)[:, None] == prototype_class[None, :]
    return torch.where(own, 1.0, incorrect)


def wrong_class_l1(weight: torch.Tensor, prototype_class: torch.Tensor) -> torch.Tensor:
    """L1 norm of the weights ``(C, P)`` from prototypes to classes other than their own."""
    own = torch.arange(weight.shape[0], device=weight.device)[:, None] == prototype_class
    return weight.masked_fill(own, 0).abs().sum()


def class_masked_min(
    distances: torch.Tensor, y: torch.Tensor, prototype_class: torch.Tensor, *, own: bool
) -> torch.Tensor:
    """Per sample, the smallest of ``distances`` ``(N, P)`` over prototypes of its own class
    (``own=True``, the cluster cost) or of the other classes (``own=False``, separation)."""
    same = y[:, None] == prototype_class[None, :]
    return distances.masked_fill(same != own, float("inf")).min(dim=1).values


def nearest_patches(
    distance_maps: torch.Tensor,
    latent: torch.Tensor,
    y: torch.Tensor,
    prototype_class: torch.Tensor,
    sample_ids: torch.Tensor,
) -> PushCandidates:
    """For each prototype, the closest patch among the samples of its class (ProtoPNet's push).

    Args:
        distance_maps: ``(N, P, h, w)`` distances of every prototype to every patch.
        latent: ``(N, D, h, w)`` the patches themselves (the vectors a push copies).
        y: ``(N,)`` labels.
        prototype_class: ``(P,)`` class of each prototype.
        sample_ids: ``(N,)`` global ids of the samples, recorded as provenance.

    Returns:
        Candidates with ``distance=inf`` and ``sample=-1`` for prototypes of absent classes.
    """
    n, p, h, w = distance_maps.shape
    other = y[:, None] != prototype_class[None, :]  # (N, P)
    masked = distance_maps.masked_fill(other[:, :, None, None], float("inf"))
    per_prototype = masked.permute(1, 0, 2, 3).reshape(p, n * h * w)
    distance, flat = per_prototype.min(dim=1)
    sample, cell = flat // (h * w), flat % (h * w)
    row, col = cell // w, cell % w
    found = torch.isfinite(distance)
    vector = latent[sample, :, row, col].float()
    return PushCandidates(
        distance=distance,
        vector=torch.where(found[:, None], vector, torch.zeros_like(vector)),
        sample=torch.where(found, sample_ids.to(sample.device)[sample], -1).long(),
        location=torch.where(found[:, None], torch.stack([row, col], dim=1), -1).long(),
    )


def stage_epochs(
    epochs: int, warm_fraction: float, last_fraction: float, push_interval: int
) -> tuple[int, list[tuple[int, int]]]:
    """Split ``epochs`` into warm-up epochs and push cycles of (joint, last-layer) epochs.

    One cycle per ``push_interval`` epochs after the warm-up (at least one). Shares are
    rounded and the joint and last-layer totals are spread evenly over the cycles (earlier
    cycles take the remainder). From 3 epochs on, the warm-up and every joint and last-layer
    stage get at least one epoch (fewer cycles are run if the budget is too small); below 3
    epochs there is one cycle, all joint, whose last-layer stage only pushes.

    Returns:
        ``(warm_up, [(joint_1, last_1), ...])``, summing to ``epochs``.
    """
    if epochs < 3:
        return 0, [(epochs, 0)]
    warm = max(1, round(epochs * warm_fraction))
    last = min(max(1, round(epochs * last_fraction)), epochs - warm - 1)
    joint = epochs - warm - last
    cycles = max(1, min((epochs - warm) // push_interval, joint, last))
    return warm, list(zip(_spread(joint, cycles), _spread(last, cycles), strict=True))


def _spread(total: int, parts: int) -> list[int]:
    share, extra = divmod(total, parts)
    return [share + (i < extra) for i in range(parts)]


def protopnet_stages(epochs: int, config) -> list[TrainingStage]:
    """The paper's schedule over ``epochs`` epochs: warm-up, then push cycles of
    joint -> push + last layer, one per ``config.push_interval`` epochs (paper: 10).

    Stage names are ``warm_up``, ``joint``, ``last_layer`` (numbered ``joint_2``,
    ``last_layer_2``... from the second cycle on). Parameter prefixes: ``features`` (backbone),
    ``add_on`` (add-on layers), ``prototype_vectors`` and ``last_layer``; they also match
    ST-ProtoPNet's per-branch ``*_trivial``/``*_support`` parameters.
    """
    warm, cycles = stage_epochs(
        epochs, config.warm_up_fraction, config.last_layer_fraction, config.push_interval
    )
    joint_lrs = {"features": features_lr_scale(config), "add_on": 1.0, "prototype_vectors": 1.0}
    stages = [TrainingStage("warm_up", warm, {"add_on": 1.0, "prototype_vectors": 1.0})]
    for cycle, (joint, last) in enumerate(cycles, start=1):
        suffix = "" if cycle == 1 else f"_{cycle}"
        stages.append(TrainingStage(f"joint{suffix}", joint, joint_lrs))
        stages.append(
            TrainingStage(
                f"last_layer{suffix}",
                last,
                {"last_layer": config.last_layer_lr_scale},
                push_first=True,
            )
        )
    return stages


def grid_argmin(distance_maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Min over the grid of ``(N, P, h, w)`` maps: values ``(N, P)``, (row, col) ``(N, P, 2)``."""
    w = distance_maps.shape[-1]
    values, flat = distance_maps.flatten(2).min(dim=2)
    return values, torch.stack([flat // w, flat % w], dim=-1)


def explain_prototypes(
    logits: torch.Tensor,
    similarities: torch.Tensor,
    distances: torch.Tensor,
    weight: torch.Tensor,
    locations: torch.Tensor,
    prototype_class: torch.Tensor,
    top_k: int,
    branches: Sequence[str] | None = None,
) -> list[PrototypeExplanation]:
    """Explanations of the predicted logits of a bias-free linear layer over similarities.

    ``contribution_j = similarity_j * weight[k, j]`` for predicted class ``k``; over all ``P``
    prototypes they sum to the logit. Lists the ``top_k`` by absolute contribution, with their
    class, best-matching grid location and (for multi-branch models) branch in ``extras``.

    Raises:
        ValueError: if ``top_k`` is not in ``[1, P]``.
    """
    p = similarities.shape[1]
    if not 1 <= top_k <= p:
        raise ValueError(f"top_k must be in [1, {p}] (the number of prototypes), got {top_k}")
    predicted = logits.argmax(dim=1)
    contributions = similarities * weight[predicted]
    top = contributions.abs().topk(top_k, dim=1).indices
    explanations = []
    for i, k in enumerate(predicted.tolist()):
        idx = top[i]
        extras = {
            "prototype_classes": prototype_class[idx].tolist(),
            "locations": [tuple(loc) for loc in locations[i, idx].tolist()],
        }
        if branches is not None:
            extras["branches"] = [branches[j] for j in idx.tolist()]
        explanations.append(
            PrototypeExplanation(
                class_index=k,
                logit=logits[i, k].item(),
                bias=0.0,
                prototype_indices=idx.tolist(),
                distances=distances[i, idx].tolist(),
                similarities=similarities[i, idx].tolist(),
                contributions=contributions[i, idx].tolist(),
                total_contribution=contributions[i].sum().item(),
                extras=extras,
            )
        )
    return explanations


def check_image_input(input_shape: tuple[int, ...], num_classes: int, *, model: str) -> None:
    """Validate build arguments of a part-prototype model (images or signals).

    Raises:
        ValueError: for bad shapes or class counts, or input that is neither an image
            ``(C, H, W)`` nor a signal ``(C, L)``.
    """
    check_build_args(input_shape, num_classes, model=model)
    if len(input_shape) not in (2, 3):
        raise ValueError(
            f"model {model!r} needs image input (C, H, W) or signal input (C, L), got "
            f"input_shape {tuple(input_shape)}: its prototypes are patches of a latent grid; "
            "use 'proto_ae' for prototypes of tabular (D,) data"
        )


def as_grid(features: torch.Tensor) -> torch.Tensor:
    """Trunk features as a 2-D latent grid ``(N, D, h, w)``: a signal's ``(N, D, l)`` becomes
    ``(N, D, 1, l)``, so prototypes, push and explanations treat both alike."""
    return features.unsqueeze(2) if features.dim() == 3 else features


def latent_grid_size(trunk: nn.Module, input_shape: tuple[int, ...]) -> tuple[int, int]:
    """The ``(h, w)`` of the latent grid a trunk makes of one input (``h = 1`` for signals)."""
    grid = trunk.grid_size(*input_shape[1:])
    return (1, *grid) if len(grid) == 1 else tuple(grid)


def add_on_layers(
    in_channels: int, dim: int, inner: type[nn.Module], outer: type[nn.Module]
) -> nn.Sequential:
    """Two 1x1 convs to ``dim`` channels, ``inner`` activation between them, ``outer`` after."""
    return nn.Sequential(
        nn.Conv2d(in_channels, dim, kernel_size=1),
        inner(),
        nn.Conv2d(dim, dim, kernel_size=1),
        outer(),
    )


class ProtoPNet(PrototypeModel):
    """Part-prototype network: "this (patch) looks like that (prototypical patch)".

    Args:
        input_shape: ``(C, H, W)``, or ``(C, L)`` for signals.
        num_classes: number of output classes.
        config: hyperparameters, loss weights and schedule.

    Raises:
        ValueError: if ``input_shape`` is not an image shape.
    """

    def __init__(
        self,
        *,
        input_shape: tuple[int, ...],
        num_classes: int,
        config: ProtoPNetConfig = ProtoPNetConfig(),
    ) -> None:
        super().__init__()
        check_image_input(input_shape, num_classes, model="protopnet")
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.config = config
        self.features = build_backbone(self.input_shape, config)
        self.add_on = add_on_layers(
            self.features.out_channels, config.latent_dim, nn.ReLU, nn.Sigmoid
        )
        classes = prototype_class_ids(num_classes, config.prototypes_per_class)
        num_prototypes = len(classes)
        # uniform in [0, 1): the range of the sigmoid latent (as the reference code)
        self.prototype_vectors = nn.Parameter(torch.rand(num_prototypes, config.latent_dim))
        self.last_layer = nn.Linear(num_prototypes, num_classes, bias=False)
        with torch.no_grad():
            self.last_layer.weight.copy_(
                class_connection_init(classes, num_classes, config.incorrect_class_connection)
            )
        self.register_buffer("prototype_class", classes, persistent=False)
        self.register_buffer("push_sample", torch.full((num_prototypes,), -1, dtype=torch.long))
        self.register_buffer("push_location", torch.full((num_prototypes, 2), -1, dtype=torch.long))
        self.register_buffer("pushed", torch.zeros(num_prototypes, dtype=torch.bool))
        self.register_buffer("active", torch.ones(num_prototypes, dtype=torch.bool))

    @property
    def prototypes(self) -> torch.Tensor:
        """Prototype vectors ``(P, D)`` (1x1 latent patches), grouped by class."""
        return self.prototype_vectors

    @property
    def latent_grid(self) -> tuple[int, int]:
        """The ``(h, w)`` of the latent grid (the resolution of :meth:`activation_maps`)."""
        return latent_grid_size(self.features, self.input_shape)

    def prototype_classes(self) -> torch.Tensor:
        """The class identity of each prototype, ``(P,)``."""
        return self.prototype_class

    def class_weights(self) -> torch.Tensor:
        """Last-layer weights ``(C, P)`` with the columns of pruned prototypes zeroed."""
        return self.last_layer.weight * self.active

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The latent grid ``(N, D, h, w)``: add-on layers over backbone features."""
        check_batch(x, self.input_shape, model="protopnet")
        return self.add_on(as_grid(self.features(x)))

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        """The latent grid of :meth:`encode` flattened, ``(N, D * h * w)``."""
        return self.encode(x).flatten(1)

    def forward(self, x: torch.Tensor) -> ProtoPNetOutput:
        min_distances, _ = grid_argmin(l2_distance_maps(self.encode(x), self.prototype_vectors))
        similarities = log_similarity(min_distances)
        return ProtoPNetOutput(
            logits=F.linear(similarities, self.class_weights()),
            min_distances=min_distances,
            similarities=similarities,
        )

    def loss(
        self, output: ProtoPNetOutput, x: torch.Tensor, y: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Named terms ``ce, cluster, separation, l1`` and the paper's weighted ``total``."""
        cfg = self.config
        d, classes = output.min_distances, self.prototype_class
        terms = {
            "ce": self.cross_entropy(output.logits, y),
            "cluster": class_masked_min(d, y, classes, own=True).mean(),
            "separation": class_masked_min(d, y, classes, own=False).mean(),
            "l1": wrong_class_l1(self.class_weights(), classes),
        }
        terms["total"] = (
            terms["ce"]
            + cfg.cluster_weight * terms["cluster"]
            - cfg.separation_weight * terms["separation"]
            + cfg.l1_weight * terms["l1"]
        )
        return terms

    def training_stages(self, epochs: int) -> list[TrainingStage]:
        """Warm-up, joint, then push + last layer; see :func:`protopnet_stages`."""
        return protopnet_stages(epochs, self.config)

    @torch.no_grad()
    def activation_maps(self, x: torch.Tensor) -> torch.Tensor:
        """Similarity of every prototype to every latent patch, ``(N, P, h, w)``."""
        return log_similarity(l2_distance_maps(self.encode(x), self.prototype_vectors))

    @torch.no_grad()
    def explain(self, x: torch.Tensor, top_k: int = 3) -> list[PrototypeExplanation]:
        """Per-sample explanation of the predicted logit (exact: no bias, ``sum sim*w``).

        ``extras["locations"]`` gives the (row, col) of the latent patch each listed prototype
        matched best ("this" part of the input looks like that prototype).

        Raises:
            ValueError: if ``top_k`` is not in ``[1, P]``.
        """
        distances, locations = grid_argmin(l2_distance_maps(self.encode(x), self.prototype_vectors))
        similarities = log_similarity(distances)
        weight = self.class_weights()
        return explain_prototypes(
            F.linear(similarities, weight),
            similarities,
            distances,
            weight,
            locations,
            self.prototype_class,
            top_k,
        )

    @torch.no_grad()
    def push_candidates(
        self, x: torch.Tensor, y: torch.Tensor, sample_ids: torch.Tensor
    ) -> PushCandidates:
        """Per prototype, the nearest latent patch among this batch's samples of its class."""
        latent = self.encode(x)
        maps = l2_distance_maps(latent, self.prototype_vectors)
        return nearest_patches(maps, latent, y, self.prototype_class, sample_ids)

    @torch.no_grad()
    def apply_push(self, best: PushCandidates) -> None:
        """Copy each found patch into its prototype; record its sample and grid location.

        Prototypes whose class had no candidate (``sample == -1``) keep their vector and flag.
        """
        record_push(self, self.prototype_vectors, best, slice(None))

    @torch.no_grad()
    def prune(
        self, x: torch.Tensor, y: torch.Tensor, *, k: int = 6, min_own: int = 3
    ) -> torch.Tensor:
        """Paper's prototype pruning (sec. 2.5): drop prototypes with impure neighbourhoods.

        Among the ``k`` training images whose closest patch is nearest to prototype ``j``,
        fewer than ``min_own`` of its class mark ``j`` as a background-like, non-class-specific
        part; it is pruned (its last-layer column is masked to zero, so it no longer votes).

        Args:
            x: training images ``(N, C, H, W)`` (run after the push, on the push data).
            y: their labels ``(N,)``.
            k: neighbourhood size (paper: 6).
            min_own: least own-class neighbours a prototype keeps (paper: 3).

        Returns:
            Indices of the prototypes pruned by this call.

        Raises:
            ValueError: if ``k`` is not in ``[1, N]`` or ``min_own`` not in ``[0, k]``.
        """
        if not 1 <= k <= len(x) or not 0 <= min_own <= k:
            raise ValueError(f"need 1 <= k <= {len(x)} and 0 <= min_own <= k, got {k}, {min_own}")
        was_training = self.training
        self.eval()
        # min_distances: each image's closest patch, so an image counts once per prototype
        distances = torch.cat([self(chunk).min_distances for chunk in x.split(256)])  # (N, P)
        self.train(was_training)
        nearest = distances.topk(k, dim=0, largest=False).indices  # (k, P)
        own = (y.to(nearest.device)[nearest] == self.prototype_class[None, :]).sum(dim=0)
        impure = (own < min_own) & self.active
        self.active[impure] = False
        return impure.nonzero().flatten()


def record_push(model: nn.Module, vectors: torch.Tensor, best: PushCandidates, rows: slice) -> None:
    """Copy ``best``'s found vectors into ``vectors`` and provenance into buffer ``rows``.

    ``best`` holds one candidate per row of ``vectors``; ``rows`` selects the matching rows
    of the model's ``push_sample``, ``push_location`` and ``pushed`` buffers.
    """
    found = best.sample >= 0
    vectors.data[found] = best.vector[found].to(vectors.dtype)
    model.push_sample[rows][found] = best.sample[found]
    model.push_location[rows][found] = best.location[found]
    model.pushed[rows][found] = True


@register_model("protopnet")
def build_protopnet(
    *, input_shape: tuple[int, ...], num_classes: int, tiny: bool = False, **kwargs
) -> ProtoPNet:
    """Registry builder: ``kwargs`` override :class:`ProtoPNetConfig` fields."""
    base = ProtoPNetConfig.tiny() if tiny else ProtoPNetConfig()
    config = override_config(base, kwargs, model="protopnet")
    return ProtoPNet(input_shape=input_shape, num_classes=num_classes, config=config)
