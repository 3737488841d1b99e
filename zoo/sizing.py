"""The size axis: every network of a family made wider or narrower together.

A family lists the model fields that set its widths in ``Generator.size_fields``, each with the
multiple its scaled values round to. ``size`` is a width multiplier over the family's default (or
given) config: :func:`size_overrides` turns it into recipe entries (``{"widths": (32, 64, 128)}``),
which `zoo train --size` and the bench apply like any other recipe entry, so a run folder's config
always holds the explicit widths it was built with. Size 1 adds nothing: size-1 runs are exactly
the family's defaults.

Parameters grow between linearly and quadratically with the width, differently per family (fixed
parts such as a VAE's mixture prior or a flow's 1x1 convs do not grow), so comparisons across
families use a parameter scale instead: :func:`size_for_params` finds the width multiplier whose
model has ``scale`` times the parameters of the family's default.
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

from .errors import ZooError

SIZE_RANGE = (1 / 32, 32)   # width multipliers size_for_params searches


def scale_width(value: int | tuple[int, ...], size: float, multiple: int) -> int | tuple[int, ...]:
    """A width (or a tuple of per-level widths) times ``size``, each rounded to the nearest multiple of
    ``multiple`` and at least ``multiple``."""
    if isinstance(value, (tuple, list)):
        return tuple(scale_width(v, size, multiple) for v in value)
    return max(multiple, int(round(value * size / multiple)) * multiple)


def check_size(size: float, what: str = "size") -> None:
    """One-line ZooError unless ``size`` is a finite number > 0."""
    if isinstance(size, bool) or not (isinstance(size, (int, float)) and math.isfinite(size) and size > 0):
        raise ZooError(f"{what} must be a finite number > 0, got {size}")


def size_overrides(cls, size: float, config=None) -> dict[str, Any]:
    """The model fields that make family ``cls`` ``size`` times as wide as ``config`` (default: the
    family's default config) in every network at once, as recipe entries. Empty at size 1; a one-line
    ZooError for a size that is not > 0, or a size other than 1 of a family without a size axis."""
    check_size(size)
    if size == 1:
        return {}
    if not cls.size_fields:
        raise ZooError(f"family {cls.name!r} has no size axis: use size 1")
    base = config if config is not None else cls.Config()
    return {f: scale_width(getattr(base, f), size, m) for f, m in cls.size_fields.items()}


def sized_model(family: str, tflops: float, size: float = 1.0):
    """``family`` as a run trained for ``tflops`` TFLOP at width multiplier ``size`` builds it (its
    recipe and the widths of ``size`` applied), for 1x28x28 images."""
    from .api import get_model_class, recipe_model, split_recipe
    return recipe_model(family, tflops, extra=split_recipe(size_overrides(get_model_class(family), size))[0])


@lru_cache(maxsize=None)
def params_at(family: str, size: float, tflops: float, tiny: bool = False) -> int:
    """Parameters of ``family`` for 1x28x28 images at width multiplier ``size``, as a run trained for
    ``tflops`` TFLOP builds it (its recipe applied; the tiny test config's own fields if ``tiny``)."""
    from .api import build_model, get_model_class, split_recipe
    if not tiny:
        return sized_model(family, tflops, size).num_params()
    cls = get_model_class(family)
    return build_model(family, (1, 28, 28), split_recipe(size_overrides(cls, size, cls.tiny_config()))[0],
                       tiny=True).num_params()


def size_for_params(family: str, scale: float, tflops: float, tiny: bool = False) -> float:
    """The width multiplier (3 significant digits) whose ``family`` model has closest to ``scale``
    times the parameters of its size-1 model, in log distance; 1 for scale 1. Widths round to
    multiples, so the count is near, not equal to, the target (the cell records the true count)."""
    from .api import get_model_class
    check_size(scale, "param scale")
    if scale == 1:
        return 1.0
    if not get_model_class(family).size_fields:
        raise ZooError(f"family {family!r} has no size axis: use param scale 1")
    target = math.log(scale * params_at(family, 1.0, tflops, tiny))
    lo, hi = (math.log(s) for s in SIZE_RANGE)
    for _ in range(40):   # bisection in log size: the parameter count does not fall as the size grows
        mid = (lo + hi) / 2
        if math.log(params_at(family, _round(math.exp(mid)), tflops, tiny)) < target:
            lo = mid
        else:
            hi = mid
    best = min({_round(math.exp(lo)), _round(math.exp(hi))},
               key=lambda s: abs(math.log(params_at(family, s, tflops, tiny)) - target))
    return best


def _round(size: float) -> float:
    return float(f"{size:.3g}")
