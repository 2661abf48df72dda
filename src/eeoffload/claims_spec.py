"""What each claim of the paper says, as this project checks it: its figure and text (:data:`CLAIMS`),
the tolerances read from the paper's wording, and how a claim's row is written.

Tolerances. Fixed from the paper's wording before looking at any result, the same for every run:

* "a <= b", "a >= b", "zero": exact, up to EPS (float round-off only), and the noise rule.
* "near x", "close to x", "around x": within :data:`NEAR` (+-0.1 in probability) of x.
* "greater or close to p_tar" (accuracy on device, Fig. 3(b)): accuracy >= p_tar - :data:`CLOSE_ACC`.
* "very low" outage: at most :data:`VERY_LOW` at every p_tar of :data:`P_TAR_OUTAGE_RANGE`.
* "for a large t_tar" / "sufficiently large latency targets" (C8, C11): where latency no longer
  binds: the value at the largest t_tar, with both curves flat (the rule: claims_evidence).
* "where latency binds" (C9): the t_tar grid points from the first one at which either curve has
  left its value at the smallest t_tar, up to (not including) the t_tar from which both curves are
  flat.
* A p_tar of a claim (0.75, 0.85, 0.875, ...) is looked up on the evaluated grid within
  P_TAR_MATCH; if the grid lacks it the claim is not applicable.
"""

from __future__ import annotations

import numpy as np

from eeoffload.claims_evidence import NOT_APPLICABLE, Band, Claim, finish

#: "near x" / "close to x" / "around x" in probability: |value - x| <= NEAR.
NEAR = 0.1
#: "accuracy always greater or close to p_tar": accuracy >= p_tar - CLOSE_ACC.
CLOSE_ACC = 0.01
#: "very low" outage probability: at most VERY_LOW at every p_tar of P_TAR_OUTAGE_RANGE.
VERY_LOW = 0.05
#: C9: share of the binding t_tar range where the conventional curve must be lower beyond the noise.
C9_MIN_SHARE = 0.5

#: The p_tar values the paper names.
P_TAR_OUTAGE_EDGE = 0.875  # Sec. IV-D: calibrated outage zero below it; conventional near 0.4 at it
CONV_OUTAGE_AT_EDGE = 0.4
P_TAR_HIGH = 0.85  # Sec. IV-E, Fig. 5(c)
CAL_MISSED_REACHABLE = 0.1  # calibrated "can reach 0.1"
CONV_MISSED_FLOOR = 0.7  # conventional "unable to obtain lower than around 0.7"
P_TAR_LOW = 0.75  # Fig. 5(a)
P_TAR_TWO_BRANCH = (0.825, 0.85)  # Fig. 6
#: C10's "p_tar range the paper plots" for the two-branch calibrated outage (Fig. 7). The paper's
#: text does not give the figure's axis; this is the range its outage text speaks of: from the
#: grid's default start (0.5) up to 0.875, the largest p_tar it names for the outage (IV-D).
P_TAR_OUTAGE_RANGE = (0.5, 0.875)

#: Every claim: id -> (figure, the claim as checked). Both the check and its not-applicable row use it.
CLAIMS: dict[str, tuple[str, str]] = {
    "C1": ("Fig. 2", (
        "Calibration lowers the probability of classifying on the device "
        "(calibrated <= conventional at every p_tar, and lower on average beyond the intervals).")),
    "C2": ("Fig. 3(b)", (
        f"Calibrated accuracy on device >= p_tar for every p_tar (paper: 'greater or close to'; slack "
        f"{CLOSE_ACC}); judged where samples are classified on the device.")),
    "C3": ("Fig. 3(c)", (
        "Calibrated total accuracy (device + cloud) >= conventional at every p_tar, and higher on "
        "average beyond the intervals ('outperforms').")),
    "C4": ("Fig. 3(a)", (
        "Calibration brings the mean confidence on device closer to the accuracy on device "
        "(mean |confidence - accuracy| over p_tar smaller, beyond the intervals).")),
    "C5": ("Fig. 4", "Calibrated inference outage <= conventional, for every p_tar."),
    "C6": ("Fig. 4", f"Calibrated outage is zero for every p_tar < {P_TAR_OUTAGE_EDGE}."),
    "C7": ("Fig. 4", (
        f"Conventional outage is near {CONV_OUTAGE_AT_EDGE} at p_tar = {P_TAR_OUTAGE_EDGE} (within +-{NEAR}).")),
    "C8": ("Fig. 5(c)", (
        f"At p_tar = {P_TAR_HIGH}, judged where latency no longer binds (largest t_tar, both curves flat), the "
        f"calibrated network's missed-deadline probability is near {CAL_MISSED_REACHABLE} (<= "
        f"{CAL_MISSED_REACHABLE + NEAR:g}) while the conventional one stays near {CONV_MISSED_FLOOR} or above "
        f"(>= {CONV_MISSED_FLOOR - NEAR:g}).")),
    "C9": ("Fig. 5(a)", (
        f"At p_tar = {P_TAR_LOW}, over the t_tar range where latency binds (from the first t_tar at which either "
        f"curve leaves its starting value up to where both are flat), the conventional network's "
        f"missed-deadline probability is lower: beyond the intervals on at least {C9_MIN_SHARE:.0%} of that "
        f"range, and higher beyond them nowhere in it.")),
    "C10": ("Fig. 7", (
        f"With two branches the calibrated network's outage is at most the one-branch calibrated outage at "
        f"every p_tar, and very low (<= {VERY_LOW}) at every p_tar in "
        f"{P_TAR_OUTAGE_RANGE[0]:g}..{P_TAR_OUTAGE_RANGE[1]:g}.")),
    "C11": ("Fig. 6 vs 5", (
        f"At p_tar {', '.join(f'{p:g}' for p in P_TAR_TWO_BRANCH)}, judged where latency no longer binds "
        f"(largest t_tar, curves flat), the conventional two-branch network misses the deadline more often than "
        f"the one-branch one (beyond the intervals); the calibrated two-branch network does not.")),
}


def not_applicable(cid: str, variant: str | None, why: str) -> Claim:
    """Claim ``cid``'s not-applicable row."""
    fig, text = CLAIMS[cid]
    return Claim(cid, fig, text, variant or "-", why, NOT_APPLICABLE)


def claim_row(cid: str, variant: str, numbers: str, verdict: str, coverage: float, *bands: Band) -> Claim:
    """Claim ``cid``'s row, through the coverage and unknown-noise rules (claims_evidence.finish)."""
    fig, text = CLAIMS[cid]
    return finish(cid, fig, text, variant, numbers, verdict, coverage, *bands)


def fmt(x: float | None) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.3f}"


def fmt_ci(lo: float | None, hi: float | None) -> str:
    """An interval of a probability as shown: ``[lo, hi]`` clipped to [0, 1] (a t-interval over few
    seeds can reach past the bounds; the verdicts use the raw values)."""
    clip = lambda x: x if x is None or not np.isfinite(x) else min(1.0, max(0.0, float(x)))  # noqa: E731
    return f"[{fmt(clip(lo))}, {fmt(clip(hi))}]"
