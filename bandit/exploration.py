"""Vowpal Wabbit exploration algorithms for `--cb_explore_adf`, each a tiny object rendering flags.

Each algorithm is defined once, here: its config section (validated fields and defaults: the
objects are what `learner.exploration` parses into), the flags it renders and owns.

The pmf these produce is what a decision service samples from and logs as the propensity;
see Bietti, Agarwal & Langford, "A Contextual Bandit Bake-off" (JMLR 2021) for all six.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Algorithm(BaseModel):
    """One exploration algorithm: its config section, its defaults and the VW flags it renders."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: the flag that selects the algorithm in VW (None: plain epsilon-greedy, VW's default)
    selector: ClassVar[str | None] = None
    #: every flag `vw_flags()` may render (owned by the project: not allowed in `vw_args`)
    flags: ClassVar[frozenset[str]] = frozenset()

    def vw_flags(self) -> str:
        raise NotImplementedError


class EpsilonGreedy(_Algorithm):
    """Greedy action with prob. 1 - epsilon + epsilon/K, every other with epsilon/K."""

    algorithm: Literal["epsilon"] = "epsilon"
    epsilon: float = Field(0.1, ge=0, le=1)
    flags: ClassVar[frozenset[str]] = frozenset({"--epsilon"})

    def vw_flags(self) -> str:
        return f"--epsilon {self.epsilon}"


class Softmax(_Algorithm):
    """p(a) proportional to exp(-lambda * predicted cost(a))."""

    algorithm: Literal["softmax"]
    lambda_: float = Field(10.0, gt=0, alias="lambda")
    selector: ClassVar[str | None] = "--softmax"
    flags: ClassVar[frozenset[str]] = frozenset({"--softmax", "--lambda"})

    def vw_flags(self) -> str:
        return f"--softmax --lambda {self.lambda_}"


class Bagging(_Algorithm):
    """Online bootstrap: `bags` policies trained on Poisson(1) resamples vote; plus epsilon."""

    algorithm: Literal["bag"]
    bags: int = Field(5, ge=1)
    epsilon: float = Field(0.0, ge=0, le=1)
    selector: ClassVar[str | None] = "--bag"
    flags: ClassVar[frozenset[str]] = frozenset({"--bag", "--epsilon"})

    def vw_flags(self) -> str:
        return f"--bag {self.bags} --epsilon {self.epsilon}"


class Cover(_Algorithm):
    """Online cover: `policies` diverse policies, with psi controlling the diversity bonus."""

    algorithm: Literal["cover"]
    policies: int = Field(4, ge=1)
    psi: float = Field(1.0, ge=0)
    selector: ClassVar[str | None] = "--cover"
    flags: ClassVar[frozenset[str]] = frozenset({"--cover", "--psi"})

    def vw_flags(self) -> str:
        return f"--cover {self.policies} --psi {self.psi}"


class SquareCB(_Algorithm):
    """Inverse gap weighting (Foster & Rakhlin 2020): p(a) = 1 / (K + gamma * gap(a))."""

    algorithm: Literal["squarecb"]
    gamma_scale: float = Field(10.0, gt=0)
    gamma_exponent: float = Field(0.5, ge=0)
    selector: ClassVar[str | None] = "--squarecb"
    flags: ClassVar[frozenset[str]] = frozenset({"--squarecb", "--gamma_scale", "--gamma_exponent"})

    def vw_flags(self) -> str:
        return f"--squarecb --gamma_scale {self.gamma_scale} --gamma_exponent {self.gamma_exponent}"


class RandomNetworkDistillation(_Algorithm):
    """RND: optimism from the error of predicting random projections of the features."""

    algorithm: Literal["rnd"]
    networks: int = Field(3, ge=1)
    alpha: float = Field(0.1, gt=0)
    epsilon: float = Field(0.0, ge=0, le=1)
    selector: ClassVar[str | None] = "--rnd"
    flags: ClassVar[frozenset[str]] = frozenset({"--rnd", "--rnd_alpha", "--epsilon"})

    def vw_flags(self) -> str:
        return f"--rnd {self.networks} --rnd_alpha {self.alpha} --epsilon {self.epsilon}"


ALGORITHMS: tuple[type[_Algorithm], ...] = (
    EpsilonGreedy, Softmax, Bagging, Cover, SquareCB, RandomNetworkDistillation,
)  # fmt: skip

#: A config section `learner.exploration`: the `algorithm` key says which (default epsilon).
Exploration = Annotated[
    EpsilonGreedy | Softmax | Bagging | Cover | SquareCB | RandomNetworkDistillation,
    Field(discriminator="algorithm"),
]

# Flags the project owns; a user's extra VW arguments may not repeat them.
RESERVED_VW_FLAGS = frozenset().union(*(a.flags for a in ALGORITHMS)) | frozenset(
    {
        "--cb_explore_adf", "--cb_adf", "-q", "--quadratic", "--interactions", "-i",
        "--initial_regressor", "-f", "--final_regressor", "--save_resume", "--data", "-d",
        "--quiet", "--lrq", "--lrqfa", "--feature_mask", "--oaa", "--probabilities",
    }
)  # fmt: skip

#: The flags that select an algorithm other than epsilon-greedy.
ALGORITHM_FLAGS = frozenset(a.selector for a in ALGORITHMS if a.selector is not None)


def with_default_algorithm(section: Any) -> Any:
    """An exploration section without `algorithm` is epsilon-greedy (the default)."""
    if isinstance(section, dict) and "algorithm" not in section:
        return {**section, "algorithm": "epsilon"}
    return section


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
