"""Deployments: strategies, the state machine and the traffic split (pure).

A deployment moves one model from its *stable* version to a *candidate* version. What
answers a request is a pure function of the deployment and the application id
(:func:`in_candidate_arm`), so every API process agrees without talking to the others, and a
returning applicant keeps the version it was given: the applicant's point on [0, 1) never
changes, and a canary's share only grows, so once on the candidate an applicant stays there.

States (docs/deployments.md draws the machine)::

    pending -> progressing -> succeeded
                  |  ^  \\-> rolled_back      (a failed health check, error rate, latency
                  v  |                         or canary gate; or a manual rollback)
                 paused  ---> aborted          (an operator stops it: stable keeps serving)

With four-eyes promotion on, a deployment starts ``awaiting_approval`` and becomes
``pending`` only when a second key holder with scope ``promote`` approves it (``reject``
ends it). ``pending`` waits until the candidate is loaded and healthy in the serving
processes;
``progressing`` runs the strategy's steps; the three others are final.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

from creditops.errors import ConflictError, InvalidInputError

STRATEGIES = ("immediate", "canary", "blue_green", "shadow", "rolling", "ab_test")
ACTIVE_STATES = ("pending", "progressing", "paused")
FINAL_STATES = ("succeeded", "rolled_back", "aborted")
AWAITING = "awaiting_approval"  # four-eyes: requested, not yet approved by a second person
STATES = (AWAITING, *ACTIVE_STATES, *FINAL_STATES)
DEFAULT_CANARY_STEPS = (0.05, 0.25, 0.5, 1.0)

# Which operator action is allowed from which state, and where it leads.
_ACTIONS = {
    "pause": ({"pending", "progressing"}, "paused"),
    "resume": ({"paused"}, "progressing"),
    "abort": (set(ACTIVE_STATES) | {AWAITING}, "aborted"),
    "rollback": (set(ACTIVE_STATES) | {"succeeded"}, "rolled_back"),
    "approve": ({AWAITING}, "pending"),
    "reject": ({AWAITING}, "aborted"),
}

# The arms of a decision: who answered it, and in which role.
ARM_PRODUCTION = "production"  # no deployment in progress
ARM_STABLE = "stable"
ARM_CANDIDATE = "candidate"
ARM_SHADOW = "shadow"


def application_point(deployment_id: str, application_id: str) -> float:
    """The applicant's fixed point on [0, 1) within one deployment: the first 8 bytes of
    sha256(deployment id, application id) over 2**64. Uniform for distinct ids, the same in
    every process and on every run."""
    digest = hashlib.sha256(f"{deployment_id}\x1f{application_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def in_candidate_arm(deployment_id: str, application_id: str, share: float) -> bool:
    """True when this applicant's request goes to the candidate at traffic ``share``."""
    if share <= 0.0:
        return False
    if share >= 1.0:
        return True
    return application_point(deployment_id, application_id) < share


def next_state(state: str, action: str) -> str:
    """The state an operator ``action`` leads to from ``state``; a clear error otherwise."""
    if action not in _ACTIONS:
        raise InvalidInputError(f"unknown action {action!r}", field="action")
    allowed, target = _ACTIONS[action]
    if state not in allowed:
        raise ConflictError(f"cannot {action} a deployment that is {state}", field="state")
    return target


def canary_steps(steps: Sequence[float] | None) -> tuple[float, ...]:
    """Validated traffic steps: increasing shares in (0, 1], ending at 1."""
    chosen = tuple(float(s) for s in (steps or DEFAULT_CANARY_STEPS))
    if not chosen or any(not 0.0 < s <= 1.0 for s in chosen):
        raise InvalidInputError("canary steps must be shares in (0, 1]", field="steps")
    if any(b <= a for a, b in pairwise(chosen)):
        raise InvalidInputError("canary steps must increase", field="steps")
    if chosen[-1] != 1.0:
        chosen = (*chosen, 1.0)
    return chosen


@dataclass(frozen=True)
class Plan:
    """The traffic a strategy gives the candidate at each step; ``shadow`` mirrors all
    traffic to the candidate and never lets it answer."""

    strategy: str
    steps: tuple[float, ...]

    @property
    def shadow(self) -> bool:
        return self.strategy == "shadow"

    def share(self, step: int) -> float:
        """The candidate's share of answers at ``step`` (0 before the first step)."""
        if self.shadow or step < 0:
            return 0.0
        return self.steps[min(step, len(self.steps) - 1)]

    def last_step(self, step: int) -> bool:
        return step >= len(self.steps) - 1


def plan_for(strategy: str, steps: Sequence[float] | None = None) -> Plan:
    if strategy not in STRATEGIES:
        raise InvalidInputError(
            f"strategy must be one of {', '.join(STRATEGIES)}; got {strategy!r}",
            field="strategy",
        )
    if strategy == "canary":
        return Plan(strategy, canary_steps(steps))
    if strategy == "ab_test":  # one step: the treatment's share, held until concluded
        if not steps or len(steps) != 1 or not 0.0 < float(steps[0]) < 1.0:
            raise InvalidInputError("an A/B test takes one split in (0, 1)", field="split")
        return Plan(strategy, (float(steps[0]),))
    if steps:
        raise InvalidInputError("only a canary takes traffic steps", field="steps")
    # immediate, blue-green and rolling switch all traffic in one step; shadow has none
    return Plan(strategy, (1.0,))
