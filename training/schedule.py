"""The inverse-square-root learning-rate schedule of Vaswani et al. (2017), with a chosen peak."""
from __future__ import annotations

import math


def inverse_sqrt_lr(step: int, peak_lr: float, warmup_steps: int) -> float:
    """Linear warm-up to ``peak_lr`` at ``warmup_steps``, then decay as 1/sqrt(step).

    The paper's d_model^-0.5 * min(step^-0.5, step * warmup^-1.5) is this with
    peak_lr = d_model^-0.5 * warmup^-0.5; naming the peak makes it a tunable number.
    """
    step = max(step, 1)
    return peak_lr * min(step / warmup_steps, math.sqrt(warmup_steps / step))
