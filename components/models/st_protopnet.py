"""ST-ProtoPNet: "Learning Support and Trivial Prototypes for Interpretable Image
Classification" (Wang, Liu, Chen, Frazer, Carneiro, ICCV 2023).

Two ProtoPNet branches share one backbone; each has its own add-on layers (1x1 convs with tanh,
as the authors' reference code), ``m_k`` prototypes per class and a bias-free last layer
(+1 own class, -0.5 others). Similarity is cosine: ``relu(cos(z_patch, p))`` max-pooled over the
latent grid, so prototypes and patches live on the unit sphere (the prototypes are used
normalised). The prediction is the sum of both branches' logits, hence
``logit_c = sum_j sim_j * w[c, j]`` over the prototypes of *both* branches.

* **Trivial** prototypes (ProtoPNet's) are pushed away from other classes by the
  *discrimination* loss: the mean over class pairs ``c != c'`` of the largest cosine between a
  trivial prototype of ``c`` and one of ``c'``.
* **Support** prototypes are pulled towards the classification boundary, like SVM support
  vectors, by the *closeness* loss: minus the mean over class pairs of the *smallest* cosine
  between their support prototypes.
* Both branches get ProtoPNet's cluster (max own-class similarity, rewarded) and separation
  (max other-class similarity, penalised) terms, an orthogonality term ``sum_c |P_c P_c^T - I|_1``
  over each class's prototypes, and the wrong-class L1 on the last layer.

Coefficients, from the authors' released code (github.com/cwangrun/ST-ProtoPNet, the same in
its CUB, Cars and Dogs settings; the paper's text was not available to check them against)::

    trivial = CE_t - 0.8 clst_t + 0.08 sep_t + 1e-3 orth_t + 1.0 discrimination + 1e-4 L1_t
    support = CE_s - 0.8 clst_s + 0.48 sep_s + 1e-3 orth_s + 1.0 closeness      + 1e-4 L1_s

Branches are trained on alternating batches, as in the reference code: even training steps
optimise the trivial objective, odd steps the support one (a persistent ``branch_step`` buffer
counts training-mode ``loss`` calls, so a resumed run keeps the parity). The inactive objective
enters with weight 0, which gives its parameters zero (not missing) gradients, so DDP's
reducer sees every parameter at every step. Outside training ``total`` is the mean of both.
Both branches are pushed (to the unit-normalised own-class patch of highest cosine).

Choices and deviations: the reference code has two variants; the similarity follows its
full-image one (``relu`` of the cosine, from Deformable ProtoPNet), the tanh add-on layers its
cropped-image one (the full-image one adds bilinear upsampling for ResNet trunks). The trunk is
the paper's ImageNet-pretrained ResNet/VGG/DenseNet with ``backbone`` + ``pretrained`` (the
joint stage then trains it at the released 1e-4 against 3e-3), by default the small
from-scratch :class:`~components.models.backbones.ConvBackbone` (1-D for signals ``(C, L)``),
or, with ``backbone_genotype``, the cells of a searched DARTS architecture (as in
:mod:`components.models.protopnet`, which explains trunks and rates). The reference code
re-normalises the prototypes after every optimiser step; here they are normalised where used
(same forward values, no hook into the optimiser). The schedule (warm-up, then push cycles of
joint -> push + last layer, backbone and last layer at the base rate) is ProtoPNet's, shared
with :mod:`components.models.protopnet`, which explains the rates. ``m_k = 5`` and ``D = 64``
are kept.

On sklearn digits (standardised, 70/15/15 split), the default config with Adam, base lr 3e-3,
batch 64, 60 epochs and a per-stage cosine schedule reaches 0.993-1.000 test accuracy over
seeds 0-4 in about 13 s per run on one CPU thread.
"""

from __future__ import annotations

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
    override_config,
    register_model,
)
from components.models.nas_ops import Genotype
from components.models.protopnet import (
    add_on_layers,
    as_grid,
    build_backbone,
    check_image_input,
    check_prototype_config,
    class_connection_init,
    explain_prototypes,
    grid_argmin,
    nearest_patches,
    protopnet_stages,
    prototype_class_ids,
    record_push,
    wrong_class_l1,
)

BRANCHES = ("trivial", "support")
PUSH_FIELDS = ("distance", "vector", "sample", "location")


@dataclass(frozen=True)
class STProtoPNetConfig:
    """Hyperparameters of :class:`STProtoPNet`; defaults in brackets are the released code's.

    Attributes:
        prototypes_per_class: ``m_k`` per branch (5).
        prototype_dim: channels ``D`` of each branch's latent grid (64, with any trunk).
        backbone: ``conv`` (small, from scratch) or a torchvision trunk (as ProtoPNet's).
        pretrained: ImageNet weights for a torchvision trunk (a file or a weights name).
        backbone_channels: output channels of each conv block of the shared backbone.
        backbone_pools: how many backbone blocks halve the grid (1: 8x8 -> 4x4).
        cluster_weight: reward on the cluster similarity, both branches (0.8).
        separation_trivial_weight: penalty on the trivial separation similarity (0.08).
        separation_support_weight: penalty on the support separation similarity (0.48).
        orthogonality_weight: coefficient of the within-class orthogonality term (1e-3).
        discrimination_weight: coefficient of the trivial discrimination term (1.0).
        closeness_weight: coefficient of the support closeness term (1.0).
        l1_weight: coefficient of the wrong-class last-layer L1 norm (1e-4).
        incorrect_class_connection: initial last-layer weight to other classes (-0.5).
        alternate_branches: optimise the branches on alternating batches (as released);
            ``False`` optimises the mean of both objectives at every step (its expectation).
        warm_up_fraction: share of the epochs for the warm-up stage.
        last_layer_fraction: share of the epochs for the last-layer stages (all cycles).
        push_interval: epochs per push cycle after the warm-up (a push every 10).
        features_lr_scale: joint-stage backbone LR as a multiple of the base LR; ``None``: 1
            from scratch, the released 1e-4 / 3e-3 with a pretrained trunk.
        last_layer_lr_scale: last-layer LR as a multiple of the base LR (see the module notes).
        backbone_genotype: a searched DARTS genotype (its ``to_dict`` form, as in a sweep's
            ``genotype.json``) whose cells replace the shared conv backbone (see
            :mod:`components.models.protopnet`); ``None``: conv backbone.
        backbone_genotype_channels: stem channels of the genotype backbone.
        backbone_genotype_cells: cells of the genotype backbone (>= 3).
    """

    prototypes_per_class: int = 5
    prototype_dim: int | None = None
    backbone: str = "conv"
    pretrained: str | None = None
    backbone_channels: tuple[int, ...] = (32, 64, 64)
    backbone_pools: int = 1
    cluster_weight: float = 0.8
    separation_trivial_weight: float = 0.08
    separation_support_weight: float = 0.48
    orthogonality_weight: float = 1e-3
    discrimination_weight: float = 1.0
    closeness_weight: float = 1.0
    l1_weight: float = 1e-4
    incorrect_class_connection: float = -0.5
    alternate_branches: bool = True
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
        """``prototype_dim``, or the released code's 64 with any trunk."""
        return 64 if self.prototype_dim is None else self.prototype_dim

    @classmethod
    def tiny(cls) -> STProtoPNetConfig:
        """The small variant used by tests."""
        return cls(prototypes_per_class=2, prototype_dim=8, backbone_channels=(8,))


@dataclass
class STProtoPNetOutput(ModelOutput):
    """:class:`STProtoPNet` forward output; ``logits = logits_trivial + logits_support``.

    Attributes:
        logits_trivial: the trivial branch's logits ``(N, C)``.
        logits_support: the support branch's logits ``(N, C)``.
        similarities_trivial: max-pooled ``relu(cos)`` to each trivial prototype ``(N, P)``.
        similarities_support: the same for the support prototypes ``(N, P)``.
    """

    logits_trivial: torch.Tensor
    logits_support: torch.Tensor
    similarities_trivial: torch.Tensor
    similarities_support: torch.Tensor


def cosine_maps(latent: torch.Tensor, unit_prototypes: torch.Tensor) -> torch.Tensor:
    """Cosine of every unit prototype with every latent patch, ``(N, P, h, w)``, in fp32."""
    with torch.autocast(latent.device.type, enabled=False):
        unit_latent = F.normalize(latent.float(), dim=1)
        return F.conv2d(unit_latent, unit_prototypes.float()[:, :, None, None])


def class_masked_max(
    similarities: torch.Tensor, y: torch.Tensor, prototype_class: torch.Tensor, *, own: bool
) -> torch.Tensor:
    """Per sample, the largest similarity ``(N, P)`` to a prototype of its own class
    (``own=True``, cluster) or of another class (``own=False``, separation)."""
    same = y[:, None] == prototype_class[None, :]
    return similarities.masked_fill(same != own, float("-inf")).max(dim=1).values


def class_pair_cosines(unit_prototypes: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Cosines between prototypes of every class pair, ``(C, C, m_k * m_k)``."""
    grouped = unit_prototypes.reshape(num_classes, -1, unit_prototypes.shape[1])  # (C, m, D)
    cos = torch.einsum("aid,bjd->abij", grouped, grouped)
    return cos.reshape(num_classes, num_classes, -1)


def off_diagonal_mean(values: torch.Tensor) -> torch.Tensor:
    """Mean of a ``(C, C)`` matrix over its off-diagonal entries (pairs of different classes)."""
    c = values.shape[0]
    other = ~torch.eye(c, dtype=torch.bool, device=values.device)
    return values[other].mean()


def discrimination_loss(unit_trivial: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Mean over class pairs of the largest cosine between their trivial prototypes."""
    return off_diagonal_mean(class_pair_cosines(unit_trivial, num_classes).amax(dim=-1))


def closeness_loss(unit_support: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Minus the mean over class pairs of the smallest cosine between their support prototypes."""
    return -off_diagonal_mean(class_pair_cosines(unit_support, num_classes).amin(dim=-1))


def orthogonality_loss(unit_prototypes: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``sum_c |P_c P_c^T - I|_1`` (entrywise) over each class's ``(m_k, D)`` prototypes."""
    grouped = unit_prototypes.reshape(num_classes, -1, unit_prototypes.shape[1])
    gram = grouped @ grouped.transpose(1, 2)
    eye = torch.eye(grouped.shape[1], device=gram.device, dtype=gram.dtype)
    return (gram - eye).abs().sum()


class STProtoPNet(PrototypeModel):
    """Support + trivial part-prototype network; prediction = sum of both branches.

    Prototype indices in :meth:`explain`, :meth:`activation_maps`, :meth:`prototype_classes`
    and the push buffers run over the trivial prototypes first (``0..P-1``), then the support
    ones (``P..2P-1``).

    Args:
        input_shape: ``(C, H, W)``, or ``(C, L)`` for signals.
        num_classes: number of output classes.
        config: hyperparameters, loss weights and schedule.

    Raises:
        ValueError: if ``input_shape`` is neither an image nor a signal shape.
    """

    def __init__(
        self,
        *,
        input_shape: tuple[int, ...],
        num_classes: int,
        config: STProtoPNetConfig = STProtoPNetConfig(),
    ) -> None:
        super().__init__()
        check_image_input(input_shape, num_classes, model="st_protopnet")
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.config = config
        self.features = build_backbone(self.input_shape, config)
        classes = prototype_class_ids(num_classes, config.prototypes_per_class)
        p, d = len(classes), config.latent_dim
        init = class_connection_init(classes, num_classes, config.incorrect_class_connection)
        for branch in BRANCHES:
            add_on = add_on_layers(self.features.out_channels, d, nn.Tanh, nn.Tanh)
            setattr(self, f"add_on_{branch}", add_on)
            setattr(self, f"prototype_vectors_{branch}", nn.Parameter(torch.rand(p, d)))
            last_layer = nn.Linear(p, num_classes, bias=False)
            with torch.no_grad():
                last_layer.weight.copy_(init)
            setattr(self, f"last_layer_{branch}", last_layer)
        self.register_buffer("prototype_class", classes, persistent=False)
        self.register_buffer("push_sample", torch.full((2 * p,), -1, dtype=torch.long))
        self.register_buffer("push_location", torch.full((2 * p, 2), -1, dtype=torch.long))
        self.register_buffer("pushed", torch.zeros(2 * p, dtype=torch.bool))
        self.register_buffer("branch_step", torch.zeros((), dtype=torch.long))

    def unit_prototypes(self, branch: str) -> torch.Tensor:
        """One branch's prototypes on the unit sphere, ``(P, D)``."""
        return F.normalize(getattr(self, f"prototype_vectors_{branch}"), dim=1)

    @property
    def prototypes(self) -> torch.Tensor:
        """Unit prototype vectors ``(2P, D)``: trivial, then support."""
        return torch.cat([self.unit_prototypes(b) for b in BRANCHES])

    def prototype_classes(self) -> torch.Tensor:
        """The class identity of each prototype, ``(2P,)`` (trivial, then support)."""
        return self.prototype_class.repeat(2)

    def encode(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each branch's latent grid ``(N, D, h, w)`` over the shared backbone features."""
        check_batch(x, self.input_shape, model="st_protopnet")
        shared = as_grid(self.features(x))
        return {b: getattr(self, f"add_on_{b}")(shared) for b in BRANCHES}

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        """The shared backbone's features flattened, ``(N, channels * h * w)``: the one latent
        both branches read (each branch's add-on latent holds only its own prototypes)."""
        check_batch(x, self.input_shape, model="st_protopnet")
        return self.features(x).flatten(1)

    def branch_cosine_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per branch, the cosine of each prototype with each patch, ``(N, P, h, w)``."""
        latent = self.encode(x)
        return {b: cosine_maps(latent[b], self.unit_prototypes(b)) for b in BRANCHES}

    def forward(self, x: torch.Tensor) -> STProtoPNetOutput:
        maps = self.branch_cosine_maps(x)
        sims = {b: maps[b].flatten(2).amax(dim=2).relu() for b in BRANCHES}
        logits = {b: getattr(self, f"last_layer_{b}")(sims[b]) for b in BRANCHES}
        return STProtoPNetOutput(
            logits=logits["trivial"] + logits["support"],
            logits_trivial=logits["trivial"],
            logits_support=logits["support"],
            similarities_trivial=sims["trivial"],
            similarities_support=sims["support"],
        )

    def loss(
        self, output: STProtoPNetOutput, x: torch.Tensor, y: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Every named term of both branch objectives, plus ``ce`` and the optimised ``total``.

        ``ce`` is the cross-entropy of the summed logits (the prediction), for monitoring
        only; the objectives use each branch's own ``ce_trivial`` / ``ce_support``. In training
        mode with gradients on, each call is one batch step of the branch alternation.
        """
        terms = {"ce": self.cross_entropy(output.logits, y)}
        for branch in BRANCHES:
            terms.update(self._branch_terms(output, y, branch))
        c = self.num_classes
        terms["discrimination"] = discrimination_loss(self.unit_prototypes("trivial"), c)
        terms["closeness"] = closeness_loss(self.unit_prototypes("support"), c)
        objectives = self.branch_objectives(terms)
        weights = self._branch_weights()
        terms["total"] = weights[0] * objectives[0] + weights[1] * objectives[1]
        return terms

    def _branch_terms(
        self, output: STProtoPNetOutput, y: torch.Tensor, branch: str
    ) -> dict[str, torch.Tensor]:
        sims = getattr(output, f"similarities_{branch}")
        classes = self.prototype_class
        return {
            f"ce_{branch}": self.cross_entropy(getattr(output, f"logits_{branch}"), y),
            f"cluster_{branch}": class_masked_max(sims, y, classes, own=True).mean(),
            f"separation_{branch}": class_masked_max(sims, y, classes, own=False).mean(),
            f"orthogonality_{branch}": orthogonality_loss(
                self.unit_prototypes(branch), self.num_classes
            ),
            f"l1_{branch}": wrong_class_l1(getattr(self, f"last_layer_{branch}").weight, classes),
        }

    def branch_objectives(self, terms: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """The (trivial, support) objectives from the named terms, with the paper's weights."""
        cfg = self.config
        separation = {
            "trivial": cfg.separation_trivial_weight,
            "support": cfg.separation_support_weight,
        }
        extra = {
            "trivial": cfg.discrimination_weight * terms["discrimination"],
            "support": cfg.closeness_weight * terms["closeness"],
        }
        return tuple(
            terms[f"ce_{b}"]
            - cfg.cluster_weight * terms[f"cluster_{b}"]
            + separation[b] * terms[f"separation_{b}"]
            + cfg.orthogonality_weight * terms[f"orthogonality_{b}"]
            + extra[b]
            + cfg.l1_weight * terms[f"l1_{b}"]
            for b in BRANCHES
        )

    def _branch_weights(self) -> tuple[float, float]:
        """(trivial, support) weights of this call's total; advances the alternation."""
        if not (self.training and torch.is_grad_enabled()):
            return 0.5, 0.5
        if not self.config.alternate_branches:
            return 0.5, 0.5
        trivial_turn = int(self.branch_step) % 2 == 0
        self.branch_step += 1
        return (1.0, 0.0) if trivial_turn else (0.0, 1.0)

    def training_stages(self, epochs: int) -> list[TrainingStage]:
        """Warm-up, joint, then push + last layer (both branches); see ``protopnet_stages``."""
        return protopnet_stages(epochs, self.config)

    @torch.no_grad()
    def activation_maps(self, x: torch.Tensor) -> torch.Tensor:
        """``relu(cos)`` of every prototype with every patch, ``(N, 2P, h, w)``."""
        maps = self.branch_cosine_maps(x)
        return torch.cat([maps[b] for b in BRANCHES], dim=1).relu()

    def class_weights(self) -> torch.Tensor:
        """Both last layers side by side, ``(C, 2P)``: the summed logits' weights."""
        return torch.cat([getattr(self, f"last_layer_{b}").weight for b in BRANCHES], dim=1)

    @torch.no_grad()
    def explain(self, x: torch.Tensor, top_k: int = 3) -> list[PrototypeExplanation]:
        """Per-sample explanation of the summed predicted logit over both branches.

        ``distances`` are squared distances between unit vectors, ``2 - 2 cos``, at the
        best-matching patch (``extras["locations"]``); ``extras["branches"]`` names each
        listed prototype's branch.

        Raises:
            ValueError: if ``top_k`` is not in ``[1, 2P]``.
        """
        maps = self.branch_cosine_maps(x)
        distances, locations = grid_argmin(torch.cat([2 - 2 * maps[b] for b in BRANCHES], dim=1))
        similarities = (1 - distances / 2).relu()
        weight = self.class_weights()
        p = len(self.prototype_class)
        return explain_prototypes(
            F.linear(similarities, weight),
            similarities,
            distances,
            weight,
            locations,
            self.prototype_classes(),
            top_k,
            branches=[b for b in BRANCHES for _ in range(p)],
        )

    @torch.no_grad()
    def push_candidates(
        self, x: torch.Tensor, y: torch.Tensor, sample_ids: torch.Tensor
    ) -> PushCandidates:
        """Per prototype (both branches), the own-class patch of highest cosine in the batch.

        The candidate vector is the unit-normalised patch (the reference code's push) and the
        distance ``2 - 2 cos``, its squared distance to the unit prototype.
        """
        latent = self.encode(x)
        found = []
        for b in BRANCHES:
            unit = F.normalize(latent[b].float(), dim=1)
            distances = (2 - 2 * cosine_maps(latent[b], self.unit_prototypes(b))).clamp(min=0)
            found.append(nearest_patches(distances, unit, y, self.prototype_class, sample_ids))
        return PushCandidates(**{f: torch.cat([getattr(c, f) for c in found]) for f in PUSH_FIELDS})

    @torch.no_grad()
    def apply_push(self, best: PushCandidates) -> None:
        """Copy each found unit patch into its prototype and record sample and location."""
        p = len(self.prototype_class)
        for i, b in enumerate(BRANCHES):
            rows = slice(i * p, (i + 1) * p)
            part = PushCandidates(**{f: getattr(best, f)[rows] for f in PUSH_FIELDS})
            record_push(self, getattr(self, f"prototype_vectors_{b}"), part, rows)


@register_model("st_protopnet")
def build_st_protopnet(
    *, input_shape: tuple[int, ...], num_classes: int, tiny: bool = False, **kwargs
) -> STProtoPNet:
    """Registry builder: ``kwargs`` override :class:`STProtoPNetConfig` fields."""
    base = STProtoPNetConfig.tiny() if tiny else STProtoPNetConfig()
    config = override_config(base, kwargs, model="st_protopnet")
    return STProtoPNet(input_shape=input_shape, num_classes=num_classes, config=config)
