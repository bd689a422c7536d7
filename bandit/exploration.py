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
