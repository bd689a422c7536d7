"""VW namespace letters for a log's own context namespaces, so VW candidates can learn from a
log whose namespaces are not the config's (another system's DSJSON) without a config edit.

VW's text format names a namespace by one character and `bandit.vw_text` renders a context with
the config's letters (`learner.namespaces`), so an unknown namespace cannot be rendered. When
the log has a namespace the config does not know, every namespace of the log gets a letter
here: first each name its initial (lower case, else upper case) where still free, then each
name left over one of its other letters, else the first free one of ``a..z A..Z``; names are
taken in sorted order, so the letters do not depend on the order of the lines. The action
namespace keeps the config's letter, and the interactions become each context namespace × the
action: the personalisation a VW `cb_explore_adf` policy needs (shared features alone do not
change which action wins).
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Sequence

from bandit.config import LearnerConfig
from bandit.errors import InvalidFeedback
from bandit.events import Impression

ACTION = "action"  # the action namespace's name in `LearnerConfig.interactions`
LETTERS = string.ascii_lowercase + string.ascii_uppercase


def log_namespaces(impressions: Iterable[Impression]) -> tuple[str, ...]:
    """The context namespaces that carry a feature somewhere in the log, sorted (an empty one
    renders nothing, so it needs no letter)."""
    found: set[str] = set()
    for imp in impressions:
        found.update(ns for ns, features in imp.context.items() if features)
    return tuple(sorted(found))


def namespace_letters(names: Sequence[str], taken: Iterable[str] = ()) -> dict[str, str]:
    """A distinct letter for each name, none of `taken`: first letters go first (to every name
    that can have its own), then the rest (the rule: module docstring)."""
    if len(names) > len(LETTERS) - len(set(taken)):
        raise InvalidFeedback(
            f"the log has {len(names)} context namespaces, VW has {len(LETTERS)} one-letter "
            f"ones and the action namespace takes {len(set(taken))}: merge namespaces before "
            f"replaying with a VW policy (the log's: {', '.join(sorted(names)[:10])}...)"
        )
    used = set(taken)
    letters: dict[str, str] = {}
    for first_round in (True, False):
        for name in sorted(set(names) - set(letters)):
            initials, others = _choices(name)
            wanted = initials if first_round else [*initials, *others]
            letter = next((c for c in wanted if c not in used), None)
            if letter is not None:
                used.add(letter)
                letters[name] = letter
    return dict(sorted(letters.items()))


def _choices(name: str) -> tuple[list[str], list[str]]:
    """The letters `name` would like: its initial in both cases; then its other letters and
    the alphabet."""
    own = [c for c in name if c in LETTERS]
    initials = [own[0].lower(), own[0].upper()] if own else []
    return initials, [c.lower() for c in own[1:]] + list(LETTERS)


def learner_for_log(learner: LearnerConfig, impressions: Iterable[Impression]) -> LearnerConfig:
    """`learner` when the config knows every namespace of the log; else the same settings with
    the log's namespaces, their letters and shared × action interactions (a low-rank pair
    that names a namespace the log lacks is dropped, and low rank with it if none is left)."""
    names = log_namespaces(impressions)
    if set(names) <= set(learner.namespaces):
        return learner
    letters = namespace_letters(names, taken=(learner.action_namespace,))
    low_rank = learner.low_rank
    if low_rank is not None:
        known = {*names, ACTION}
        pairs = [p for p in low_rank.pairs if set(p) <= known]
        low_rank = low_rank.model_copy(update={"pairs": pairs}) if pairs else None
    return learner.model_copy(
        update={
            "namespaces": letters,
            "interactions": [(ns, ACTION) for ns in names],
            "low_rank": low_rank,
        }
    )
