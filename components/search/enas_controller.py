"""The ENAS LSTM controller over the DARTS cell space (Pham et al., "Efficient Neural Architecture
Search via Parameter Sharing", ICML 2018, section 2.3; reference code melodyguan/enas,
``src/cifar10/micro_controller.py``).

For the normal and then the reduction cell (one LSTM run, the second cell continuing from the
first's state), every intermediate node takes four decisions: two inputs and then two operations.
An input is chosen by attention over the *anchors* (the hidden states that ended earlier nodes;
zeros for the two cell inputs), an operation by a linear softmax layer; the next step's input is
the chosen anchor, the chosen operation's embedding, or (after a node, which ends with one more
LSTM step that makes its anchor) the learned start embedding ``g_emb``. Logits are shaped as in
ENAS, ``tanh_constant * tanh(logits / temperature)``.

Departures from the reference: the second input of a node is drawn from the inputs other than
the first (the DARTS genotype of this project feeds a node from two distinct inputs; ENAS allows
the same input twice); the operations are the search's op set without ``none`` (as random
search samples them; default: this project's DARTS primitives), with no sep-conv prior in the
op bias (ENAS initialises it to 10 for its two separable convolutions): the controller starts
uniform, like random search; one LSTM layer. Rollouts run as a batch, so that a REINFORCE
step's samples and a memory batch are one pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from components.models.nas_ops import PRIMITIVES, Genotype

# The operations a controller chooses from: every primitive but "none" (as random search).
CONTROLLER_OPS: tuple[str, ...] = tuple(p for p in PRIMITIVES if p != "none")


@dataclass
class Rollout:
    """A batch of controller decisions.

    Attributes:
        decisions: ``(B, T)`` chosen indices: per cell and node, input 1, input 2, op 1, op 2.
        log_prob: ``(B,)`` summed log-probability of each row's decisions (differentiable).
        entropy: ``(B,)`` summed entropy of the distributions the decisions were drawn from.
        hidden: ``(B, hidden)`` the LSTM hidden state after the last step (the state the
            "Understanding NAS techniques" study compares between sampled architectures).
    """

    decisions: torch.Tensor
    log_prob: torch.Tensor
    entropy: torch.Tensor
    hidden: torch.Tensor


class Controller(nn.Module):
    """An ENAS micro-search controller emitting DARTS genotypes.

    Args:
        nodes: intermediate nodes per cell.
        ops: the operation names chosen from.
        hidden: LSTM width (ENAS: 64 for the micro search).
        temperature: logits are divided by it (ENAS: 5.0).
        tanh_constant: then squashed to ``tanh_constant * tanh(.)`` (ENAS: 2.5).
    """

    def __init__(
        self,
        nodes: int,
        ops: Sequence[str] = CONTROLLER_OPS,
        *,
        hidden: int = 64,
        temperature: float = 5.0,
        tanh_constant: float = 2.5,
    ) -> None:
        super().__init__()
        self.nodes, self.ops = nodes, tuple(ops)
        self.temperature, self.tanh_constant = temperature, tanh_constant
        self.lstm = nn.LSTMCell(hidden, hidden)
        self.g_emb = nn.Parameter(torch.empty(1, hidden))
        self.op_emb = nn.Embedding(len(self.ops), hidden)
        self.w_soft = nn.Linear(hidden, len(self.ops))
        self.attn_1 = nn.Linear(hidden, hidden, bias=False)
        self.attn_2 = nn.Linear(hidden, hidden, bias=False)
        self.v_attn = nn.Linear(hidden, 1, bias=False)
        for param in self.parameters():  # ENAS: uniform(-0.1, 0.1), op bias zero here
            nn.init.uniform_(param, -0.1, 0.1)
        nn.init.zeros_(self.w_soft.bias)

    @property
    def num_decisions(self) -> int:
        """Decisions per architecture: 4 per node, 2 cells."""
        return 8 * self.nodes

    def forward(
        self,
        batch: int = 1,
        generator: torch.Generator | None = None,
        forced: torch.Tensor | None = None,
    ) -> Rollout:
        """Sample ``batch`` architectures, or score ``forced`` ``(B, T)`` decisions (teacher
        forcing: the same steps, with the given choices fed back instead of sampled ones)."""
        if forced is not None:
            batch = len(forced)
        steps = _Steps(self, batch, generator, forced)
        for _ in range(2):  # normal, then reduction cell
            anchors, keys = [], []
            for _ in range(2):  # the cell's two inputs: zero anchors
                h = steps.advance()
                anchors.append(torch.zeros_like(h))
                keys.append(self.attn_1(h))
            for _node in range(self.nodes):
                first = None
                for _ in range(2):
                    h = steps.advance()
                    query = torch.tanh(torch.stack(keys, 1) + self.attn_2(h)[:, None])
                    logits = self._shape(self.v_attn(query).squeeze(-1))
                    if first is not None:  # two distinct inputs per node
                        logits = logits.scatter(1, first[:, None], float("-inf"))
                    first = steps.choose(logits)
                    steps.inputs = torch.stack(anchors, 1)[torch.arange(batch), first]
                for _ in range(2):
                    op = steps.choose(self._shape(self.w_soft(steps.advance())))
                    steps.inputs = self.op_emb(op)
                h = steps.advance()
                anchors.append(h)
                keys.append(self.attn_1(h))
                steps.inputs = self.g_emb.expand(batch, -1)
        return steps.rollout()

    def _shape(self, logits: torch.Tensor) -> torch.Tensor:
        return self.tanh_constant * torch.tanh(logits / self.temperature)

    def genotypes(self, decisions: torch.Tensor) -> list[Genotype]:
        """The genotype of each row of ``decisions``; a node's two edges sorted by input."""
        return [self.genotype(row.tolist()) for row in decisions]

    def genotype(self, decisions: Sequence[int]) -> Genotype:
        """The genotype of one decision sequence."""
        cells, it = [], iter(decisions)
        for _ in range(2):
            edges = []
            for _node in range(self.nodes):
                src_a, src_b, op_a, op_b = (next(it) for _ in range(4))
                pair = sorted(
                    [(self.ops[op_a], src_a), (self.ops[op_b], src_b)], key=lambda e: e[1]
                )
                edges.extend(pair)
            cells.append(tuple(edges))
        return Genotype(normal=cells[0], reduce=cells[1])


class _Steps:
    """The running LSTM state, decisions and their log-probabilities of one batched rollout."""

    def __init__(self, controller: Controller, batch: int, generator, forced) -> None:
        self.controller, self.generator, self.forced = controller, generator, forced
        width = controller.g_emb.shape[1]
        self.state = (torch.zeros(batch, width), torch.zeros(batch, width))
        self.inputs = controller.g_emb.expand(batch, -1)
        self.decisions: list[torch.Tensor] = []
        self.log_probs: list[torch.Tensor] = []
        self.entropies: list[torch.Tensor] = []

    def advance(self) -> torch.Tensor:
        self.state = self.controller.lstm(self.inputs, self.state)
        return self.state[0]

    def choose(self, logits: torch.Tensor) -> torch.Tensor:
        log_p = torch.log_softmax(logits, -1)
        p = log_p.exp()
        if self.forced is None:
            choice = torch.multinomial(p.detach(), 1, generator=self.generator).squeeze(1)
        else:
            choice = self.forced[:, len(self.decisions)]
        self.decisions.append(choice)
        self.log_probs.append(log_p.gather(1, choice[:, None]).squeeze(1))
        self.entropies.append(-(p * log_p.masked_fill(p == 0, 0.0)).sum(-1).detach())
        return choice

    def rollout(self) -> Rollout:
        return Rollout(
            decisions=torch.stack(self.decisions, 1),
            log_prob=torch.stack(self.log_probs, 1).sum(1),
            entropy=torch.stack(self.entropies, 1).sum(1),
            hidden=self.state[0].detach(),
        )
