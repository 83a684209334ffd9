"""Where advantages come from: outcome rewards alone, or a learned value function (PPO).

The RL loop asks a *critic* three things and never branches on the algorithm's name:

- ``sequence_advantages(rewards_P_G, valid_P_G)``: one number per attempt, used to keep or drop
  attempts and logged with the transcripts;
- ``prepare(model, batch, rewards_B)``: fill the collated batch's advantages (and, for PPO, its
  returns and old values); returns metrics;
- ``watch`` / ``loss``: inside ``learner.update``, an extra loss term per micro-batch.

``OutcomeCritic`` is every algorithm of ``ADVANTAGES`` (GRPO, RLOO, REINFORCE, REINFORCE++,
expert iteration): no value function, a group or batch baseline, one advantage per sequence.

``ValueCritic`` is PPO with a learned value function (Schulman et al. 2017; the LLM recipe of
Ouyang et al. 2022 and OpenRLHF, minus the KL-in-reward, which rlft applies in the loss):

1. The value model is a linear head on the policy's last hidden state (``rlft.models.ValueHead``),
   not a separate network: one forward pass gives log-probs and values, which matters on 2 CPU
   cores. Value gradients flow into the shared trunk, weighted by ``algorithm.value_coef``; the
   head has its own learning rate, ``algorithm.value_lr``, because it starts from 0.
2. Values are read from the hidden states the LM head receives (a forward pre-hook), aligned
   like the log-probs: the value of token t is V(state before t).
3. The outcome reward sits on each attempt's last sampled token; advantages are GAE over
   sampled tokens or over turns (``algorithm.gae_level``, ``rlft.algos.values.GAE``), whitened
   over the batch's sampled tokens; the value target is the lambda-return.
4. The value loss is clipped around the values of the batch's rollout (``algorithm.value_clip``).
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext

import torch
from torch import Tensor

from rlft.algos.advantages import ADVANTAGES
from rlft.algos.losses import Norm, value_loss
from rlft.algos.values import GAE, explained_variance, terminal_rewards, whiten
from rlft.config import Job
from rlft.learner import batch_logprobs, micro_batches
from rlft.models import VALUE_HEAD, attach_value_head
from rlft.types import Batch


class OutcomeCritic:
    """No value function: ``ADVANTAGES[name]`` over each group's outcome rewards."""

    def __init__(self, job: Job, model, model_path: str) -> None:
        self.advantages = ADVANTAGES[job.algorithm.name]
        self.lrs: dict[str, float] = {}  # no parameters of its own

    def sequence_advantages(self, rewards_P_G: Tensor, valid_P_G: Tensor) -> Tensor:
        return self.advantages(rewards_P_G, valid_P_G=valid_P_G)

    def prepare(self, model, batch: Batch, rewards_B: Tensor) -> dict[str, float]:
        return {}  # collate already put one advantage per sequence in batch.adv_BT

    def watch(self, model):
        return nullcontext([])

    def loss(self, hidden: list[Tensor], mb: Batch, norm: Norm) -> tuple[Tensor | float, dict]:
        return 0.0, {}


class ValueCritic:
    """PPO's learned value function and GAE (see the module docstring)."""

    def __init__(self, job: Job, model, model_path: str) -> None:
        algo = job.algorithm
        self.head = attach_value_head(model, model_path)
        self.gae = GAE[algo.gae_level]
        self.gamma, self.lam = algo.gamma, algo.gae_lambda
        self.coef, self.clip = algo.value_coef, algo.value_clip
        self.aggregation = algo.aggregation
        self.micro_batch_size = job.optim.micro_batch_size
        self.temperature = job.sampling.temperature or 1.0
        self.lrs = {f"{VALUE_HEAD}.": algo.value_lr or job.optim.lr}  # parameter-name prefix -> lr

    def sequence_advantages(self, rewards_P_G: Tensor, valid_P_G: Tensor) -> Tensor:
        """1 for every valid attempt (all are trained: a value baseline gives even a group of
        equal rewards a signal), 0 for errored ones. The real advantages are per token."""
        return valid_P_G.float()

    @contextmanager
    def watch(self, model):
        """Collect the hidden states entering the LM head during the forward passes inside."""
        seen: list[Tensor] = []
        handle = model.get_output_embeddings().register_forward_pre_hook(lambda mod, args: seen.append(args[0]))
        try:
            yield seen
        finally:
            handle.remove()

    def values(self, hidden: list[Tensor], mb: Batch) -> Tensor:
        """values_BT of a micro-batch from the two passes of ``prefix_logprobs`` (prefixes, then
        continuations), aligned like its log-probs: 0 where the attention mask is 0."""
        assert len(hidden) == 2, f"expected the prefix and continuation passes, saw {len(hidden)} LM-head calls"
        prefix_PTH, cont_BTH = hidden
        hidden_BTH = torch.cat([prefix_PTH[:, -1:][mb.row_B], cont_BTH[:, :-1]], 1)
        return torch.where(mb.attention_mask_BT.bool(), self.head(hidden_BTH), 0.0)

    @torch.no_grad()
    def prepare(self, model, batch: Batch, rewards_B: Tensor) -> dict[str, float]:
        """Old values, then GAE: batch.adv_BT (whitened), batch.returns_BT, batch.values_BT."""
        device = next(model.parameters()).device
        parts = []
        for mb in micro_batches(batch, self.micro_batch_size, device):
            with self.watch(model) as hidden:
                batch_logprobs(model, mb, self.temperature)
            parts.append(self.values(hidden, mb).cpu())
        values_BT = torch.cat(parts)
        mask_BT = batch.loss_mask_BT
        adv_BT, returns_BT = self.gae(terminal_rewards(rewards_B, mask_BT), values_BT, mask_BT, gamma=self.gamma, lam=self.lam)
        batch.adv_BT, batch.returns_BT, batch.values_BT = whiten(adv_BT, mask_BT), returns_BT, values_BT
        n = mask_BT.sum().clamp(min=1)
        return {
            "explained_variance": explained_variance(values_BT, returns_BT, mask_BT),
            "value_mean": float((values_BT * mask_BT).sum() / n),
            "return_mean": float((returns_BT * mask_BT).sum() / n),
            "gae_adv_std": float(adv_BT[mask_BT.bool()].std()) if int(mask_BT.sum()) > 1 else 0.0,
        }

    def loss(self, hidden: list[Tensor], mb: Batch, norm: Norm) -> tuple[Tensor, dict]:
        """value_coef · clipped value loss of a micro-batch; metrics value_loss and its clip fraction."""
        loss, metrics = value_loss(
            self.values(hidden, mb), mb.returns_BT, mb.loss_mask_BT, norm,
            old_values_BT=mb.values_BT, clip=self.clip, aggregation=self.aggregation,
        )
        return self.coef * loss, {**metrics, "value_loss": loss.detach()}


# algorithm.name -> its critic; every other name of ADVANTAGES is outcome-only
CRITICS = {"ppo": ValueCritic}


def make_critic(job: Job, model, model_path: str):
    """The critic of ``job.algorithm.name``; for PPO this attaches the value head to ``model``,
    so call it before the optimizer is made and the checkpoint is restored."""
    return CRITICS.get(job.algorithm.name, OutcomeCritic)(job, model, model_path)
