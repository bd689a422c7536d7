"""The decision pmf: the exact probability of every action under the whole mixture.

p(a) = f * U(a) + (1 - f) * q(a), with f the forced share and U uniform over the messages
(every candidate but "send nothing"); q is U again for a cold-start learner, otherwise the
policy's pmf: VW's exploration pmf, or the send rule's. Versions of one message (`msg.v1`,
`msg.v2`) can be collapsed so the policy offers only the one it ranks best. Everything here
is pure numpy on small arrays, so the logged propensity is what the sampler really used.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def message_mask(action_ids: Sequence[str], none_action: str) -> np.ndarray:
    """True for every candidate that sends a message (all but the send-nothing action)."""
    return np.fromiter((a != none_action for a in action_ids), dtype=bool, count=len(action_ids))


def uniform_over(mask: np.ndarray) -> np.ndarray:
    """Uniform over the True entries (over all entries when none is True)."""
    if not mask.any():
        return np.full(mask.shape, 1.0 / mask.size)
    return mask / mask.sum()


def version_group(action_id: str) -> str:
    """The message an action is a version of: the id up to its last '.' (`review.v2` -> `review`)."""
    return action_id.rsplit(".", 1)[0]


def collapse_versions(
    pmf: np.ndarray, action_ids: Sequence[str], ranking: np.ndarray
) -> np.ndarray:
    """Move each message's mass onto its best-ranked version (ties: the first listed)."""
    best: dict[str, int] = {}
    for i, action_id in enumerate(action_ids):
        group = version_group(action_id)
        j = best.get(group)
        if j is None or ranking[i] > ranking[j]:
            best[group] = i
    if len(best) == len(action_ids):
        return pmf
    out = np.zeros_like(pmf)
    for i, action_id in enumerate(action_ids):
        out[best[version_group(action_id)]] += pmf[i]
    return out


def send_rule_choice(
    outcomes: np.ndarray, messages: np.ndarray, none_index: int | None, margin: float
) -> int:
    """The in-course help loop's rule: the message with the highest P(helpful) is sent iff
    P(helpful) exceeds both P(not helpful) and P(ignored) by more than `margin`; else nothing.

    `outcomes` is (n, 3): P(helpful), P(not helpful), P(ignored) per candidate (rows of the
    send-nothing action are ignored). Without a send-nothing action the best message is sent.
    """
    helpful = np.where(messages, outcomes[:, 0], -np.inf)
    best = int(np.argmax(helpful))
    if not messages.any():
        return none_index if none_index is not None else 0
    ph, pn, pi = outcomes[best]
    if none_index is None or ph - max(pn, pi) > margin:
        return best
    return none_index


def send_rule_pmf(choice: int, n_actions: int, epsilon: float) -> np.ndarray:
    """(1 - epsilon) on the rule's choice plus epsilon spread uniformly over every candidate."""
    pmf = np.full(n_actions, epsilon / n_actions)
    pmf[choice] += 1.0 - epsilon
    return pmf


def mix(forced: np.ndarray, policy: np.ndarray, forced_share: float) -> np.ndarray:
    """f * forced + (1 - f) * policy, renormalised against float drift."""
    pmf = forced_share * forced + (1.0 - forced_share) * policy
    return pmf / pmf.sum()
