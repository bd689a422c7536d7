"""Vowpal Wabbit exploration algorithms for `--cb_explore_adf`, each a tiny object rendering flags.

The pmf these produce is what a decision service samples from and logs as the propensity;
see Bietti, Agarwal & Langford, "A Contextual Bandit Bake-off" (JMLR 2021) for all six.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class EpsilonGreedy:
    """Greedy action with prob. 1 - epsilon + epsilon/K, every other with epsilon/K."""

    epsilon: float = 0.1

    def vw_flags(self) -> str:
        return f"--epsilon {self.epsilon}"


@dataclass(frozen=True, slots=True)
class Softmax:
    """p(a) proportional to exp(-lambda * predicted cost(a))."""

    lambda_: float = 10.0

    def vw_flags(self) -> str:
        return f"--softmax --lambda {self.lambda_}"


@dataclass(frozen=True, slots=True)
class Bagging:
    """Online bootstrap: `bags` policies trained on Poisson(1) resamples vote; plus epsilon."""

    bags: int = 5
    epsilon: float = 0.0

    def vw_flags(self) -> str:
        return f"--bag {self.bags} --epsilon {self.epsilon}"


@dataclass(frozen=True, slots=True)
class Cover:
    """Online cover: `policies` diverse policies, with psi controlling the diversity bonus."""

    policies: int = 4
    psi: float = 1.0

    def vw_flags(self) -> str:
        return f"--cover {self.policies} --psi {self.psi}"


@dataclass(frozen=True, slots=True)
class SquareCB:
    """Inverse gap weighting (Foster & Rakhlin 2020): p(a) = 1 / (K + gamma * gap(a))."""

    gamma_scale: float = 10.0
    gamma_exponent: float = 0.5

    def vw_flags(self) -> str:
        return f"--squarecb --gamma_scale {self.gamma_scale} --gamma_exponent {self.gamma_exponent}"


@dataclass(frozen=True, slots=True)
class RandomNetworkDistillation:
    """RND: optimism from the error of predicting random projections of the features."""

    networks: int = 3
    alpha: float = 0.1
    epsilon: float = 0.0

    def vw_flags(self) -> str:
        return f"--rnd {self.networks} --rnd_alpha {self.alpha} --epsilon {self.epsilon}"


Exploration = EpsilonGreedy | Softmax | Bagging | Cover | SquareCB | RandomNetworkDistillation

# Flags the project owns; a user's extra VW arguments may not repeat them.
RESERVED_VW_FLAGS = frozenset(
    {
        "--cb_explore_adf", "--cb_adf", "--epsilon", "--softmax", "--lambda", "--bag", "--cover",
        "--psi", "--squarecb", "--gamma_scale", "--gamma_exponent", "--rnd", "--rnd_alpha",
        "-q", "--quadratic", "--interactions", "-i", "--initial_regressor", "-f",
        "--final_regressor", "--save_resume", "--data", "-d", "--quiet", "--lrq", "--lrqfa",
        "--feature_mask", "--oaa", "--probabilities",
    }
)  # fmt: skip


ALGORITHM_FLAGS = frozenset({"--softmax", "--bag", "--cover", "--squarecb", "--rnd"})


def flag_values(arguments: str) -> dict[str, str]:
    """`--flag value` pairs of a VW command line (`--flag` alone maps to "")."""
    tokens = arguments.split()
    values: dict[str, str] = {}
    for i, token in enumerate(tokens):
        if token.startswith("-") and not _is_number(token):
            following = tokens[i + 1] if i + 1 < len(tokens) else ""
            is_value = following and (not following.startswith("-") or _is_number(following))
            values[token] = following if is_value else ""
    return values


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def same_exploration(saved_arguments: str, wanted_flags: str) -> bool:
    """True if a policy saved with `saved_arguments` explores as `wanted_flags` says."""
    saved, wanted = flag_values(saved_arguments), flag_values(wanted_flags)
    if (ALGORITHM_FLAGS & set(saved)) != (ALGORITHM_FLAGS & set(wanted)):
        return False
    return all(_same_value(saved.get(flag), value) for flag, value in wanted.items())


def only_epsilon_differs(saved_arguments: str, wanted_flags: str) -> bool:
    """Both are plain epsilon-greedy (VW accepts a new `--epsilon` on a restored model)."""
    saved, wanted = flag_values(saved_arguments), flag_values(wanted_flags)
    return not (ALGORITHM_FLAGS & (set(saved) | set(wanted))) and "--epsilon" in wanted


def _same_value(a: str | None, b: str) -> bool:
    if a is None:
        return False
    if _is_number(a) and _is_number(b):
        return abs(float(a) - float(b)) <= 1e-6 * max(1.0, abs(float(b)))
    return a == b


FEATURE_FLAGS = frozenset({"-q", "--quadratic", "--lrq", "--lrqfa", "--interactions"})


def feature_flag_set(arguments: str) -> frozenset[tuple[str, str]]:
    """The interaction and low-rank flags of a VW command line, as (flag, value) pairs."""
    tokens = arguments.split()
    pairs = set()
    for i, option in enumerate(tokens[:-1]):
        if option in FEATURE_FLAGS:
            pairs.add(("-q" if option == "--quadratic" else option, tokens[i + 1]))
    return frozenset(pairs)
