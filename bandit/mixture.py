"""The decision pmf: the exact probability of every action under the whole mixture.

p(a) = f * U(a) + (1 - f) * q(a), with f the forced share and U uniform over the messages
(every candidate but "send nothing"); q is U again for a cold-start learner, otherwise the
policy's pmf: VW's exploration pmf, or the send rule's. Versions of one message (`msg.v1`,
`msg.v2`) can be collapsed so the policy offers only the one it ranks best. Plain Python
lists: for a handful of actions they are several times faster than numpy, and this runs on
every decision. The logged propensity is exactly what the sampler used.
"""

from __future__ import annotations

from collections.abc import Sequence


def message_mask(action_ids: Sequence[str], none_action: str) -> list[bool]:
    """True for every candidate that sends a message (all but the send-nothing action)."""
    return [a != none_action for a in action_ids]


def uniform_over(mask: Sequence[bool]) -> list[float]:
    """Uniform over the True entries (over all entries when none is True)."""
    count = sum(1 for m in mask if m)
    if count == 0:
        return [1.0 / len(mask)] * len(mask)
    share = 1.0 / count
    return [share if m else 0.0 for m in mask]


def version_group(action_id: str) -> str:
    """The message an action is a version of: the id up to its last '.' (`review.v2` -> `review`)."""
    return action_id.rsplit(".", 1)[0]


def collapse_versions(
    pmf: Sequence[float], action_ids: Sequence[str], ranking: Sequence[float]
) -> list[float]:
    """Move each message's mass onto its best-ranked version (ties: the first listed)."""
    best: dict[str, int] = {}
    groups = [version_group(a) for a in action_ids]
    for i, group in enumerate(groups):
        j = best.get(group)
        if j is None or ranking[i] > ranking[j]:
            best[group] = i
    if len(best) == len(action_ids):
        return list(pmf)
    out = [0.0] * len(pmf)
    for i, group in enumerate(groups):
        out[best[group]] += pmf[i]
    return out


def send_rule_choice(
    outcomes: Sequence[Sequence[float]],
    messages: Sequence[bool],
    none_index: int | None,
    margin: float,
) -> int:
    """The in-course help loop's rule: the message with the highest P(helpful) is sent iff
    P(helpful) exceeds both P(not helpful) and P(ignored) by more than `margin`; else nothing.

    `outcomes` holds P(helpful), P(not helpful), P(ignored) per candidate (rows of the
    send-nothing action are ignored). Without a send-nothing action the best message is sent.
    """
    candidates = [i for i, m in enumerate(messages) if m]
    if not candidates:
        return none_index if none_index is not None else 0
    best = max(candidates, key=lambda i: outcomes[i][0])  # first of equals, like argmax
    ph, pn, pi = outcomes[best]
    if none_index is None or ph - max(pn, pi) > margin:
        return best
    return none_index


def send_rule_pmf(choice: int, n_actions: int, epsilon: float) -> list[float]:
    """(1 - epsilon) on the rule's choice plus epsilon spread uniformly over every candidate."""
    pmf = [epsilon / n_actions] * n_actions
    pmf[choice] += 1.0 - epsilon
    return pmf


def mix(forced: Sequence[float], policy: Sequence[float], forced_share: float) -> list[float]:
    """f * forced + (1 - f) * policy, renormalised against float drift."""
    keep = 1.0 - forced_share
    pmf = [forced_share * u + keep * q for u, q in zip(forced, policy, strict=True)]
    total = sum(pmf)
    return [p / total for p in pmf]


def draw(pmf: Sequence[float], u: float) -> int:
    """Inverse-CDF draw for u in [0, 1); never returns a zero-probability action."""
    target = u * sum(pmf)
    cumulative = 0.0
    last_positive = 0
    for i, p in enumerate(pmf):
        if p <= 0.0:
            continue
        last_positive = i
        cumulative += p
        if target < cumulative:
            return i
    return last_positive  # u * total at the very top, after float rounding


def argmax(values: Sequence[float]) -> int:
    """Index of the largest value, the first of equals."""
    best = 0
    for i in range(1, len(values)):
        if values[i] > values[best]:
            best = i
    return best
