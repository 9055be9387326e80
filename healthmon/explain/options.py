"""The knobs of an explanation, shared by the integrator and the checks that explain again.

:mod:`healthmon.explain.integrated` reads them; :mod:`healthmon.explain.faithfulness`
copies them with the other baseline to measure how much the explanation depends on it.
"""

from __future__ import annotations

from dataclasses import dataclass

from healthmon.errors import ModelError

BASELINES = ("pad", "mask")
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class ExplainOptions:
    """Knobs of :func:`healthmon.explain.explain` (defaults measured in ``benchmarks/explain_bench.py``).

    Attributes:
        tolerance: accepted |delta|, absolute, in probability units. Absolute because the
            score is a probability a clinician reads on a 0-1 scale: an error of 0.05 is
            equally visible whatever f(x) − f(baseline) is, while a relative tolerance
            explodes when that difference is small (explaining a label the note does not
            support) and would spend the step budget where nothing visible changes.
            :attr:`Explanation.relative_delta` reports the relative figure too. For a
            regression version it is in standard deviations of the training target (the
            explanation's own ``tolerance`` is the value in the target's units).
        segments: equal pieces the path starts in; each is halved while its error is large.
            Each piece gets one Gauss-Legendre node, its midpoint, whose forward pass also
            gives f there: halving a piece then needs no extra forward.
        max_steps: cap on gradient evaluations per note and pass (one per segment, all
            rounds). A bf16 pass that misses the tolerance is followed by one fp32 pass
            with the same cap, so a note can cost up to twice the cap in the worst case.
        baseline: ``pad`` (default) or ``mask`` fills every non-special token of the baseline.
        precision: ``auto`` (default: bf16 autocast where the hardware has native bf16,
            else fp32), ``fp32`` or ``bf16``. The endpoints are always the classifier's own
            scores, so bf16 rounding counts against the tolerance; a note that misses it in
            bf16 is integrated again in fp32.
        batch_tokens: tokens per forward/backward chunk (segments x windows x length);
            ``None`` picks 4,096 on CPU and 32,768 on GPUs.
        faithfulness: also compute comprehensiveness/sufficiency AOPC (15 extra forwards).
        baseline_sensitivity: also explain with the other baseline and report agreement.
        seed: for the random-words reference of the faithfulness check.
    """

    tolerance: float = 0.05
    segments: int = 4
    max_steps: int = 64
    baseline: str = "pad"
    precision: str = "auto"
    batch_tokens: int | None = None
    faithfulness: bool = True
    baseline_sensitivity: bool = False
    seed: int = 13

    def validated(self) -> "ExplainOptions":
        if self.baseline not in BASELINES:
            raise ModelError("baseline 'pad' or 'mask'", repr(self.baseline), "pass baseline='pad' or 'mask'")
        if self.precision not in PRECISIONS:
            raise ModelError("precision auto, fp32 or bf16", repr(self.precision), "pass one of those")
        if not (0 < self.tolerance < 1):
            raise ModelError("a tolerance between 0 and 1 (probability units)", repr(self.tolerance), "e.g. 0.05")
        if not (1 <= self.segments <= self.max_steps <= 4096):
            raise ModelError(
                "1 <= segments <= max_steps <= 4096",
                f"segments={self.segments}, max_steps={self.max_steps}",
                "e.g. segments=4, max_steps=64",
            )
        return self
