"""How much live traffic the canary decides, moved by the outcomes of its decisions.

A canary (``credit_risk.traffic``) decides a share of live applications beside the champion.
Which model is better for the business shows only in outcomes, and outcomes come late (months
for a loan), so the share should follow the evidence as it arrives: little traffic to a model
while nothing is known, more to the one whose decisions cost less, and never all of it to
either while the evidence is thin. This module is that policy, as pure functions of evidence:

1. ``DecisionCosts``: what one decided application costs the lender, by decision and outcome.
   The reward of an application is minus its cost.
2. ``ArmEvidence``: per model ("arm"), the mean reward per decided application and how sure
   that mean is (a Gaussian posterior: mean and variance of the estimate).
3. ``ThompsonSplit``: the canary's share is the posterior probability that the canary's mean
   reward is the higher one, clipped to ``[floor, ceiling]``.

Thompson sampling as probability matching: a Thompson sampler draws a plausible mean for each
arm from its posterior and sends the next application to the arm whose draw is higher; over
many applications each arm gets a share equal to the probability that it is the better one.
Computing that probability once per update (Monte Carlo over ``draws``) and publishing it as a
share gives the same allocation without a per-request draw, and keeps the request path a pure
hash of the request id (``credit_risk.traffic``): the share is the only state the serving
workers need. Probability matching spends traffic on an arm in proportion to the chance it is
best, so a clearly worse canary loses its traffic quickly, a clearly better one takes over,
and two arms that cannot be told apart keep sharing, which is what gathers the evidence to
tell them apart.

Declined applicants (reject inference): a declined applicant gets no loan, so in production
their outcome is almost never observed, and an evidence that only used labelled rows would
judge each model on the applicants it approved, rewarding a model that declines everyone
doubtful. Here a decline's cost does not depend on the outcome (booked P&L: nothing lent,
nothing lost, nothing earned; ``DecisionCosts.decline``), so its reward is known the moment
it is decided and no outcome is needed. The margin a decline forgoes on an applicant who would
have repaid is not booked as a cost, yet it is not lost from the comparison: both arms decide
random slices of the same applicants (the hash assignment), so an arm that declines good
applicants earns 0 on them where the other earns the margin, and its mean reward per
application is lower. ``ArmEvidence.from_decisions`` therefore counts every decided
application: the share of each decision comes from all of them, the default rate behind
approvals and reviews from those whose outcome has arrived (a stratified estimate, also
unbiased while outcomes are still in flight, since recent approvals are not yet labelled but
recent declines need no label).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import get_args

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from credit_risk.contract import Decision

DECISIONS: tuple[Decision, ...] = get_args(Decision)
# The posterior variance of an arm that has decided nothing: one squared unit of cost (the
# loss of a whole loan), so wide that it never looks better or worse than any evidence.
PRIOR_VARIANCE = 1.0


class DecisionCosts(BaseModel):
    """What one decided application costs the lender, in units of the amount lent; a negative
    cost is a gain. Defaults are a plain consumer-credit picture (tune them to the book):

    | decision | repaid | defaulted |
    | --- | --- | --- |
    | approve | -0.15: the margin earned | 1.00: the loss given default |
    | review | -0.115: 0.02 handling, 90 % approved | 0.42: 0.02 handling, 40 % approved |
    | decline | 0 | 0 |

    A review costs a person's time and ends as the reviewer decides: most repayers approved
    (the margin on those), most defaulters declined (the loss on those the reviewer misses).

    A decline books nothing either way, on purpose: its outcome is rarely observed, and its
    forgone margin shows as the gap to the other arm's approvals (module docstring). Each
    cost is affine in the outcome, ``base + per_default * defaulted``, which lets the evidence
    work from default rates per decision.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    loss_given_default: float = Field(
        1.0, gt=0, description="Share of the amount lost when an approved loan defaults."
    )
    margin: float = Field(
        0.15, gt=0, description="Share of the amount earned when an approved loan is repaid."
    )
    review_handling: float = Field(
        0.02, ge=0, description="Cost of a person's review of one application."
    )
    review_declines_defaulters: float = Field(
        0.6, ge=0, le=1, description="Share of reviewed defaulters a reviewer declines."
    )
    review_approves_repayers: float = Field(
        0.9, ge=0, le=1, description="Share of reviewed repayers a reviewer approves."
    )
    decline: float = Field(
        0.0, description="Booked cost of a decline, whatever its (unobserved) outcome."
    )

    def affine(self, decision: Decision) -> tuple[float, float]:
        """``(base, per_default)``: the cost is ``base`` if repaid, ``base + per_default``
        if defaulted."""
        if decision == "approve":
            return -self.margin, self.loss_given_default + self.margin
        if decision == "review":
            repaid = self.review_handling - self.review_approves_repayers * self.margin
            defaulted = (
                self.review_handling
                + (1.0 - self.review_declines_defaulters) * self.loss_given_default
            )
            return repaid, defaulted - repaid
        return self.decline, 0.0

    def cost(self, decision: Decision, defaulted: bool) -> float:
        base, per_default = self.affine(decision)
        return base + per_default * float(defaulted)

    def table(self) -> dict[Decision, tuple[float, float]]:
        """Per decision, the cost if repaid and if defaulted."""
        return {d: (self.cost(d, False), self.cost(d, True)) for d in DECISIONS}

    def costs(self, decisions: np.ndarray, defaulted: np.ndarray) -> np.ndarray:
        """Per row, the cost of its decision given its outcome (1 = defaulted)."""
        base, per_default = self.affine_rows(decisions)
        result: np.ndarray = base + per_default * np.asarray(defaulted, dtype=np.float64)
        return result

    def affine_rows(self, decisions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per row, ``affine`` of its decision; an unknown decision is an error."""
        base = np.full(len(decisions), np.nan)
        per_default = np.full(len(decisions), np.nan)
        for decision in DECISIONS:
            rows = decisions == decision
            base[rows], per_default[rows] = self.affine(decision)
        if np.isnan(base).any():
            unknown = sorted({str(d) for d in decisions[np.isnan(base)]})
            raise ValueError(f"decisions must be one of {DECISIONS}, not {unknown}")
        return base, per_default


@dataclass(frozen=True)
class ArmEvidence:
    """What the outcomes so far say of one arm's mean reward per decided application.

    ``count``: outcomes behind the estimate (labelled applications; the policy's
    ``min_outcomes`` counts these). ``mean``: the estimated mean reward. ``variance``: the
    variance of that estimate, i.e. of the Gaussian posterior of the mean (not of one reward).
    """

    count: int
    mean: float
    variance: float

    def __post_init__(self) -> None:
        if self.count < 0 or not self.variance >= 0 or not math.isfinite(self.mean):
            raise ValueError(f"invalid evidence {self}")

    @classmethod
    def from_rewards(cls, rewards: np.ndarray) -> ArmEvidence:
        """Evidence from observed rewards alone: their mean, and the squared standard error."""
        values = np.asarray(rewards, dtype=np.float64)
        n = len(values)
        if n == 0:
            return cls(0, 0.0, PRIOR_VARIANCE)
        spread = float(values.var(ddof=1)) if n > 1 else PRIOR_VARIANCE
        return cls(n, float(values.mean()), spread / n)

    @classmethod
    def from_decisions(
        cls, decisions: np.ndarray, defaulted: np.ndarray, costs: DecisionCosts
    ) -> ArmEvidence:
        """Evidence from every application the arm decided (``decisions``) and the outcomes
        known so far (``defaulted``: 1.0 or 0.0, NaN where no outcome has arrived, as for
        declines and recent approvals).

        Stratified by decision: the expected cost is ``sum_d share_d * (base_d + per_default_d
        * rate_d)``, with each decision's share from all decided rows and its default rate from
        its labelled rows (Jeffreys' Beta(1/2, 1/2) prior, so a decision with no outcome yet
        counts as a coin flip with the matching uncertainty). A decline needs no rate: its
        cost is label-free. The variance adds the rates' posterior variances (weighted by the
        squared shares and slopes) and the sampling variance of the shares."""
        decisions = np.asarray(decisions)
        labels = np.asarray(defaulted, dtype=np.float64)
        if decisions.shape != labels.shape:
            raise ValueError("decisions and defaulted must have the same length")
        total = len(decisions)
        if total == 0:
            return cls(0, 0.0, PRIOR_VARIANCE)
        known = ~np.isnan(labels)
        base, _ = costs.affine_rows(decisions)
        expected_cost = base.copy()  # per row: its decision's expected cost
        rate_variance = 0.0
        outcomes = 0
        for decision in DECISIONS:
            rows = decisions == decision
            _, slope = costs.affine(decision)
            if slope == 0.0 or not rows.any():
                continue
            labelled = labels[rows & known]
            outcomes += len(labelled)
            rate = (labelled.sum() + 0.5) / (len(labelled) + 1.0)
            expected_cost[rows] += slope * rate
            share = rows.mean()
            rate_variance += (share * slope) ** 2 * rate * (1.0 - rate) / (len(labelled) + 2.0)
        share_variance = float(expected_cost.var()) / total
        return cls(outcomes, -float(expected_cost.mean()), float(rate_variance + share_variance))


@dataclass(frozen=True)
class SplitDecision:
    """A new canary share and why: ``probability_canary_better`` is None when the evidence was
    too thin to use (an arm below ``min_outcomes``) and the share was only held within bounds."""

    share: float
    probability_canary_better: float | None
    note: str


class ThompsonSplit(BaseModel):
    """The policy: the canary's share is P(canary's mean reward > champion's), from the arms'
    Gaussian posteriors by Monte Carlo, clipped to ``[floor, ceiling]``.

    - ``floor``/``ceiling``: neither arm starves. A canary at the floor still decides enough
      applications to be re-judged if the world changes; the champion keeps ``1 - ceiling``
      so an arm that looks better is never given everything on evidence that could still
      turn (and the comparison goes on until a person promotes or rolls back).
    - ``min_outcomes``/``unproven_ceiling``: until both arms have ``min_outcomes`` outcomes the
      share does not follow the posterior (early rewards are few and those that have arrived
      first are not a random sample of outcomes); it stays where it is, except that an arm
      still below ``min_outcomes`` gets at most ``unproven_ceiling``. When both are unproven
      the cap is the canary's: the champion takes the rest.
    - ``max_step``: the most the share may move in one update (None: no limit), for
      operators who want a slow ramp whatever the evidence says.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    floor: float = Field(0.05, ge=0, le=0.5, description="Least share either arm keeps.")
    ceiling: float = Field(0.95, ge=0.5, le=1, description="Most share the canary may get.")
    min_outcomes: int = Field(
        200, ge=0, description="Outcomes per arm before the share follows the evidence."
    )
    unproven_ceiling: float = Field(
        0.2, gt=0, le=1, description="Most share an arm with fewer than min_outcomes may get."
    )
    draws: int = Field(20_000, ge=2, description="Monte Carlo draws per update (even).")
    max_step: float | None = Field(
        None, gt=0, le=1, description="Most the share may move per update (None: no limit)."
    )

    @model_validator(mode="after")
    def _consistent(self) -> ThompsonSplit:
        if not self.floor <= self.unproven_ceiling <= self.ceiling:
            raise ValueError("floor <= unproven_ceiling <= ceiling is required")
        if self.draws % 2:
            raise ValueError("draws must be even (each draw is used with its arms swapped)")
        return self

    def probability_canary_better(
        self, champion: ArmEvidence, canary: ArmEvidence, rng: np.random.Generator
    ) -> float:
        """P(canary's mean reward > champion's) under independent Gaussian posteriors.

        Half the draws are made, then reused with the arms' normals swapped, so swapping the
        arms gives exactly ``1 - p`` (ties count half): the policy has no favourite."""
        z = rng.standard_normal((self.draws // 2, 2))
        z = np.concatenate([z, z[:, ::-1]])
        champion_means = champion.mean + math.sqrt(champion.variance) * z[:, 0]
        canary_means = canary.mean + math.sqrt(canary.variance) * z[:, 1]
        wins = np.mean(canary_means > champion_means)
        ties = np.mean(canary_means == champion_means)
        return float(wins + 0.5 * ties)

    def decide(
        self,
        champion: ArmEvidence,
        canary: ArmEvidence,
        current_share: float,
        rng: np.random.Generator,
    ) -> SplitDecision:
        """The next canary share from the arms' evidence and the share now live. A share of
        0 (a rolled-back canary) would come back at the floor: callers leave a stopped canary
        alone rather than ask."""
        low, high = self.floor, self.ceiling
        canary_unproven = canary.count < self.min_outcomes
        champion_unproven = champion.count < self.min_outcomes
        if canary_unproven or champion_unproven:
            if canary_unproven:
                high = min(high, self.unproven_ceiling)
            elif champion_unproven:
                low = max(low, 1.0 - self.unproven_ceiling)
            share = float(np.clip(current_share, low, high))
            note = (
                f"held: champion {champion.count}, canary {canary.count} outcomes "
                f"(< {self.min_outcomes} for one)"
            )
            return SplitDecision(share, None, note)
        probability = self.probability_canary_better(champion, canary, rng)
        share = probability
        if self.max_step is not None:
            share = float(
                np.clip(share, current_share - self.max_step, current_share + self.max_step)
            )
        share = float(np.clip(share, low, high))
        return SplitDecision(share, probability, f"P(canary better)={probability:.3f}")

    def canary_share(
        self,
        champion: ArmEvidence,
        canary: ArmEvidence,
        current_share: float,
        rng: np.random.Generator,
    ) -> float:
        """The next canary share (``decide`` without the explanation)."""
        return self.decide(champion, canary, current_share, rng).share
