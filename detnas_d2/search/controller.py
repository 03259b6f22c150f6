"""RL controller strategy (``SEARCH.STRATEGY "controller"``): an LSTM policy trained with clipped PPO.

The LSTM emits one categorical decision per token of the space's encoding (``tokens.py``), with invalid
choices masked, so every sampled architecture is valid. After each generation (a batch of POPULATION sampled
architectures) the advantage of a sample is its fitness minus an exponential moving average baseline (divided
by the batch's fitness spread with ``NORMALIZE_ADVANTAGE``), and ``PPO_EPOCHS`` full-batch Adam steps minimise
the clipped PPO loss minus an entropy bonus. Sampling draws from the strategy's ``random.Random``; the weights
start from a ``torch.Generator`` seeded with SEARCH.SEED, and the update is deterministic, so the parameters,
Adam state, baseline and pending batch in :meth:`state_dict` (tensors as base64 bytes, exact) resume exactly.
"""

import base64
import contextlib
import logging
import math
import statistics
from typing import Any, List, Sequence

import numpy as np
import torch
from torch import nn

from ..space.base import SearchSpace
from .strategies import IsLegal, SearchStrategy, _check_int
from .tokens import tokenizer_for

logger = logging.getLogger("detnas_d2.search")


def tensor_to_json(tensor: torch.Tensor) -> dict:
    """A tensor as ``{"dtype", "shape", "data": base64 of its bytes}`` (round-trips bit-exactly)."""
    array = tensor.detach().cpu().contiguous().numpy()
    return {"dtype": str(array.dtype), "shape": list(array.shape), "data": base64.b64encode(array.tobytes()).decode()}


def tensor_from_json(data: dict) -> torch.Tensor:
    """Inverse of :func:`tensor_to_json`."""
    array = np.frombuffer(base64.b64decode(data["data"]), dtype=np.dtype(data["dtype"]))
    return torch.from_numpy(array.reshape(data["shape"]).copy())


def _encode_tree(obj: Any) -> Any:
    """``obj`` (dicts, lists, numbers, tensors) as JSON data; tensors become ``{"__tensor__": ...}``."""
    if isinstance(obj, torch.Tensor):
        return {"__tensor__": tensor_to_json(obj)}
    if isinstance(obj, dict):
        return {str(key): _encode_tree(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_encode_tree(value) for value in obj]
    return obj


def _decode_tree(obj: Any) -> Any:
    """Inverse of :func:`_encode_tree` (dict keys stay strings)."""
    if isinstance(obj, dict):
        if set(obj) == {"__tensor__"}:
            return tensor_from_json(obj["__tensor__"])
        return {key: _decode_tree(value) for key, value in obj.items()}
    if isinstance(obj, list):
        return [_decode_tree(value) for value in obj]
    return obj


class ControllerPolicy(nn.Module):
    """LSTM over the decisions: input = embedding of the previous decision, output = that token's logits.

    Args:
        sizes: number of choices of each decision, in encoding order.
        hidden_size: LSTM and embedding width.
        seed: seed of the initial embedding and weights.
    """

    def __init__(self, sizes: Sequence[int], hidden_size: int, seed: int):
        super().__init__()
        self.sizes = list(sizes)
        self.offsets = np.cumsum([0] + self.sizes[:-1]).tolist()
        generator = torch.Generator().manual_seed(seed)
        total = sum(self.sizes)
        self.start = nn.Parameter(torch.zeros(hidden_size))
        self.embedding = nn.Parameter(torch.randn(total, hidden_size, generator=generator) * 0.1)
        self.cell = nn.LSTMCell(hidden_size, hidden_size)
        self.heads = nn.Linear(hidden_size, total)
        bound = 1.0 / math.sqrt(hidden_size)
        for tensor in list(self.cell.parameters()) + [self.heads.weight]:
            with torch.no_grad():
                tensor.uniform_(-bound, bound, generator=generator)
        with torch.no_grad():
            self.heads.bias.zero_()  # uniform policy at the start

    def _logits(self, hidden: torch.Tensor, position: int) -> torch.Tensor:
        """Logits of token ``position`` from the LSTM output ``hidden`` (batch, hidden)."""
        start = self.offsets[position]
        rows = slice(start, start + self.sizes[position])
        return hidden @ self.heads.weight[rows].T + self.heads.bias[rows]

    def _input(self, position: int, previous: torch.Tensor) -> torch.Tensor:
        """LSTM input of token ``position``: the learnt start vector, or the previous decision's embedding."""
        if position == 0:
            return self.start.expand(previous.shape[0], -1)
        return self.embedding[self.offsets[position - 1] + previous]

    def step(self, position: int, previous: torch.Tensor, state):
        """One LSTM step: ``(logits of token position, new state)``."""
        h, c = self.cell(self._input(position, previous), state)
        return self._logits(h, position), (h, c)

    def evaluate(self, tokens: torch.Tensor, masks: List[torch.Tensor]):
        """Log-probability and entropy (summed over tokens) of each row of ``tokens`` (batch, T) under the masks."""
        batch = tokens.shape[0]
        state = None
        log_prob = torch.zeros(batch)
        entropy = torch.zeros(batch)
        previous = torch.zeros(batch, dtype=torch.long)
        for position in range(len(self.sizes)):
            logits, state = self.step(position, previous, state)
            log_p = torch.log_softmax(logits.masked_fill(~masks[position], float("-inf")), dim=-1)
            entropy = entropy - (log_p.exp() * log_p.masked_fill(~masks[position], 0.0)).sum(-1)  # no 0 * -inf
            previous = tokens[:, position]
            log_prob = log_prob + log_p.gather(1, previous[:, None])[:, 0]
        return log_prob, entropy


@contextlib.contextmanager
def _one_thread():
    """Run the controller's small tensor ops on one thread, so results do not depend on the thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _draw(probs: Sequence[float], u: float) -> int:
    """Index drawn by inverse CDF with uniform ``u`` in [0, 1) (the last allowed choice absorbs rounding)."""
    cumulative, last = 0.0, 0
    for index, p in enumerate(probs):
        if p > 0.0:
            cumulative += p
            last = index
            if u < cumulative:
                return index
    return last


class ControllerStrategy(SearchStrategy):
    """PPO-trained LSTM controller: every generation is POPULATION distinct legal samples of the policy.

    Args:
        space: the search space the architectures come from.
        population: candidates per generation (generation 0 is that many random legal architectures).
        generations: number of generations, the random one included.
        topk: size of the elitist archive that parents are drawn from.
        seed: seed of the strategy's ``random.Random`` (the search is deterministic given it).
        max_random_tries: random draws allowed to find one legal candidate before
            :class:`CandidateSearchExhausted` is raised.
        hidden_size: width of the LSTM policy.
        lr: Adam learning rate of the policy.
        clip: PPO clipping range of the probability ratio.
        entropy_weight: weight of the entropy bonus.
        baseline_decay: decay of the fitness moving average used as baseline, in [0, 1).
        ppo_epochs: full-batch Adam steps per generation.
        normalize_advantage: divide the advantages by the generation's fitness spread.
    """

    name = "controller"

    def __init__(
        self,
        space: SearchSpace,
        *,
        population: int,
        generations: int,
        topk: int,
        seed: int,
        max_random_tries: int,
        hidden_size: int = 64,
        lr: float = 0.02,
        clip: float = 0.2,
        entropy_weight: float = 0.01,
        baseline_decay: float = 0.5,
        ppo_epochs: int = 10,
        normalize_advantage: bool = True,
    ):
        super().__init__(
            space,
            population=population,
            generations=generations,
            topk=topk,
            seed=seed,
            max_random_tries=max_random_tries,
        )
        _check_int("hidden_size", hidden_size, 1)
        _check_int("ppo_epochs", ppo_epochs, 1)
        for arg, value in (("lr", lr), ("clip", clip)):
            if not value > 0:
                raise ValueError(f"{arg} must be > 0, got {value!r}")
        if not 0.0 <= baseline_decay < 1.0:
            raise ValueError(f"baseline_decay must be in [0, 1), got {baseline_decay!r}")
        if not entropy_weight >= 0:
            raise ValueError(f"entropy_weight must be >= 0, got {entropy_weight!r}")
        self.hidden_size, self.lr, self.clip = hidden_size, lr, clip
        self.entropy_weight, self.baseline_decay, self.ppo_epochs = entropy_weight, baseline_decay, ppo_epochs
        self.normalize_advantage = bool(normalize_advantage)
        self.tokenizer = tokenizer_for(space)
        self.policy = ControllerPolicy(self.tokenizer.sizes, hidden_size, seed)
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=lr)
        #: moving average of the fitness; None before the first update
        self.baseline: float | None = None
        #: token lists of the proposed, not yet updated generation (in proposal order)
        self.batch_tokens: List[List[int]] = []

    def settings(self) -> dict:
        return {
            **super().settings(),
            "SEARCH.CONTROLLER.HIDDEN_SIZE": self.hidden_size,
            "SEARCH.CONTROLLER.LR": self.lr,
            "SEARCH.CONTROLLER.CLIP": self.clip,
            "SEARCH.CONTROLLER.ENTROPY_WEIGHT": self.entropy_weight,
            "SEARCH.CONTROLLER.BASELINE_DECAY": self.baseline_decay,
            "SEARCH.CONTROLLER.PPO_EPOCHS": self.ppo_epochs,
            "SEARCH.CONTROLLER.NORMALIZE_ADVANTAGE": self.normalize_advantage,
        }

    # ------------------------------------------------------------------ sampling

    @torch.no_grad()
    def sample_tokens(self) -> List[int]:
        """One token list drawn from the policy with the masks applied (randomness: ``self.rng``)."""
        tokens: List[int] = []
        state, previous = None, torch.zeros(1, dtype=torch.long)
        for position in range(len(self.tokenizer.sizes)):
            logits, state = self.policy.step(position, previous, state)
            allowed = torch.tensor(self.tokenizer.allowed(tokens))
            probs = torch.softmax(logits[0].double().masked_fill(~allowed, float("-inf")), dim=-1)
            tokens.append(_draw(probs.tolist(), self.rng.random()))
            previous = torch.tensor([tokens[-1]])
        return tokens

    def propose(self, is_legal: IsLegal) -> list:
        """POPULATION distinct legal architectures sampled from the policy (each within MAX_RANDOM_TRIES draws)."""
        archs, keys, self.batch_tokens = [], set(), []
        with _one_thread():
            while len(archs) < self.population:
                self._propose_one(archs, keys, is_legal)
        return archs

    def _propose_one(self, archs: list, keys: set, is_legal: IsLegal) -> None:
        """Append one new legal sample to ``archs`` (its key to ``keys``, its tokens to the batch)."""
        tokens, arch = self._sample_legal(
            lambda candidate: self.space.encode(candidate) not in keys and is_legal(candidate)
        )
        archs.append(arch)
        keys.add(self.space.encode(arch))
        self.batch_tokens.append(tokens)

    def _sample_legal(self, is_new_legal: IsLegal):
        """``(tokens, arch)`` of a legal policy sample; a collapsed policy falls back to one uniform random draw."""
        for _ in range(self.max_random_tries):
            tokens = self.sample_tokens()
            arch = self.space.validate(self.tokenizer.to_arch(tokens))
            if is_new_legal(arch):
                return tokens, arch
        logger.warning(
            "The controller drew no new legal architecture in %d tries (SEARCH.MAX_RANDOM_TRIES); "
            "taking a uniform random one",
            self.max_random_tries,
        )
        arch = self.space.validate(self._random_legal(1, is_new_legal)[0])
        return self.tokenizer.from_arch(arch), arch

    # ------------------------------------------------------------------ learning

    def _masks(self, batch: List[List[int]]) -> List[torch.Tensor]:
        """Per token position, the (batch, choices) boolean mask of allowed choices along each token list."""
        return [
            torch.tensor([self.tokenizer.allowed(tokens[:position]) for tokens in batch])
            for position in range(len(self.tokenizer.sizes))
        ]

    def _advantages(self, rewards: List[float]) -> torch.Tensor:
        """Fitness minus the moving-average baseline (optionally / the batch's spread); then update the baseline."""
        mean = statistics.fmean(rewards)
        if self.baseline is None:
            self.baseline = mean
        advantages = torch.tensor([reward - self.baseline for reward in rewards], dtype=torch.float64)
        if self.normalize_advantage and len(rewards) > 1:
            advantages = advantages / (statistics.pstdev(rewards) + 1e-8)
        self.baseline = self.baseline_decay * self.baseline + (1.0 - self.baseline_decay) * mean
        return advantages.float()

    def _ppo_update(self, batch: List[List[int]], advantages: torch.Tensor) -> dict:
        """``PPO_EPOCHS`` full-batch Adam steps on the clipped surrogate minus the entropy bonus."""
        tokens, masks = torch.tensor(batch), self._masks(batch)
        with torch.no_grad():
            old_log_prob, _ = self.policy.evaluate(tokens, masks)
        for _ in range(self.ppo_epochs):
            log_prob, entropy = self.policy.evaluate(tokens, masks)
            ratio = torch.exp(log_prob - old_log_prob)
            clipped = torch.clamp(ratio, 1.0 - self.clip, 1.0 + self.clip)
            surrogate = torch.minimum(ratio * advantages, clipped * advantages).mean()
            loss = -surrogate - self.entropy_weight * entropy.mean()
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
        return {"loss": float(loss), "entropy": float(entropy.mean())}

    def update(self, keys: Sequence[str], fitnesses: Sequence[float | None], costs=None) -> None:
        """Train the policy on the evaluated batch (non-finite fitness: sample skipped), then merge the top-k;
        ``costs`` (given to every strategy) play no part in the reward."""
        if len(keys) != len(self.batch_tokens):
            raise ValueError(f"update got {len(keys)} keys but the controller proposed {len(self.batch_tokens)}")
        scored = [(tokens, fitness) for tokens, fitness in zip(self.batch_tokens, fitnesses) if fitness is not None]
        if scored:
            advantages = self._advantages([fitness for _, fitness in scored])
            with _one_thread():
                stats = self._ppo_update([tokens for tokens, _ in scored], advantages)
            logger.info(
                "Controller update %d/%d: baseline %.4g, loss %.4g, policy entropy %.4g nats",
                self.generation + 1,
                self.generations,
                self.baseline,
                stats["loss"],
                stats["entropy"],
            )
        self.batch_tokens = []
        super().update(keys, fitnesses, costs)

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict:
        return {
            **super().state_dict(),
            "policy": _encode_tree(self.policy.state_dict()),
            "optimizer": _encode_tree(self.optimizer.state_dict()),
            "baseline": self.baseline,
            "batch_tokens": self.batch_tokens,
        }

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.policy.load_state_dict(_decode_tree(state["policy"]))
        optimizer_state = _decode_tree(state["optimizer"])
        optimizer_state["state"] = {int(key): value for key, value in optimizer_state["state"].items()}
        self.optimizer.load_state_dict(optimizer_state)
        self.baseline = state["baseline"]
        self.batch_tokens = [list(tokens) for tokens in state["batch_tokens"]]
