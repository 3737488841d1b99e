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

``depth`` is the second axis: a multiplier of the fields that count repeated blocks
(``Generator.depth_fields``: layers, flow steps, residual blocks), each rounded to a whole count no
smaller than its least. A family whose widths reach their rounding floor (the flow) grows smaller
only through it; at a given depth :func:`size_for_params` finds the width for a parameter scale
that is still measured against the default model (size 1, depth 1).
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


def scale_depth(value: int, depth: float, least: int) -> int:
    """A block count times ``depth``, rounded half up to a whole count and at least ``least``."""
    return max(least, int(math.floor(value * depth + 0.5)))


def check_size(size: float, what: str = "size") -> None:
    """One-line ZooError unless ``size`` is a finite number > 0."""
    if isinstance(size, bool) or not (isinstance(size, (int, float)) and math.isfinite(size) and size > 0):
        raise ZooError(f"{what} must be a finite number > 0, got {size}")


def size_overrides(cls, size: float, config=None, depth: float = 1.0) -> dict[str, Any]:
    """The model fields that make family ``cls`` ``size`` times as wide as ``config`` (default: the
    family's default config) in every network at once, and ``depth`` times as deep, as recipe
    entries. Empty at size 1 and depth 1; a one-line ZooError for a size or depth that is not > 0,
    or for a size (depth) other than 1 of a family without a size (depth) axis."""
    check_size(size)
    check_size(depth, "depth")
    base = config if config is not None else cls.Config()
    out: dict[str, Any] = {}
    if size != 1:
        if not cls.size_fields:
            raise ZooError(f"family {cls.name!r} has no size axis: use size 1")
        out.update({f: scale_width(getattr(base, f), size, m) for f, m in cls.size_fields.items()})
    if depth != 1:
        if not cls.depth_fields:
            raise ZooError(f"family {cls.name!r} has no depth axis: use depth 1")
        out.update({f: scale_depth(getattr(base, f), depth, least) for f, least in cls.depth_fields.items()})
    return out


def sized_model(family: str, tflops: float, size: float = 1.0, depth: float = 1.0):
    """``family`` as a run trained for ``tflops`` TFLOP at width multiplier ``size`` and depth
    multiplier ``depth`` builds it (its recipe and those fields applied), for 1x28x28 images."""
    from .api import get_model_class, recipe_model, split_recipe
    return recipe_model(family, tflops, extra=split_recipe(size_overrides(get_model_class(family), size,
                                                                          depth=depth))[0])


@lru_cache(maxsize=None)
def params_at(family: str, size: float, tflops: float, tiny: bool = False, depth: float = 1.0) -> int:
    """Parameters of ``family`` for 1x28x28 images at width multiplier ``size`` and depth multiplier
    ``depth``, as a run trained for ``tflops`` TFLOP builds it (its recipe applied; the tiny test
    config's own fields if ``tiny``)."""
    from .api import build_model, get_model_class, split_recipe
    if not tiny:
        return sized_model(family, tflops, size, depth).num_params()
    cls = get_model_class(family)
    return build_model(family, (1, 28, 28), split_recipe(size_overrides(cls, size, cls.tiny_config(), depth))[0],
                       tiny=True).num_params()


def size_for_params(family: str, scale: float, tflops: float, tiny: bool = False, depth: float = 1.0) -> float:
    """The width multiplier (3 significant digits) whose ``family`` model at depth multiplier
    ``depth`` has closest to ``scale`` times the parameters of its default model (size 1, depth 1),
    in log distance; 1 for scale 1 at depth 1. Widths round to multiples, so the count is near, not
    equal to, the target (the cell records the true count)."""
    from .api import get_model_class
    check_size(scale, "param scale")
    check_size(depth, "depth")
    if scale == 1 and depth == 1:
        return 1.0
    if not get_model_class(family).size_fields:
        raise ZooError(f"family {family!r} has no size axis: use param scale 1")
    target = math.log(scale * params_at(family, 1.0, tflops, tiny))
    lo, hi = (math.log(s) for s in SIZE_RANGE)
    for _ in range(40):   # bisection in log size: the parameter count does not fall as the size grows
        mid = (lo + hi) / 2
        if math.log(params_at(family, _round(math.exp(mid)), tflops, tiny, depth)) < target:
            lo = mid
        else:
            hi = mid
    best = min({_round(math.exp(lo)), _round(math.exp(hi))},
               key=lambda s: abs(math.log(params_at(family, s, tflops, tiny, depth)) - target))
    return best


def fitted_params(family: str, tflops: float) -> float:
    """The parameter count of ``family``'s best size at ``tflops`` TFLOP by its fitted size rule
    (``Generator.size_rule``); a one-line ZooError for a family without one."""
    from .api import get_model_class
    check_size(tflops, "--tflops")
    rule = get_model_class(family).size_rule
    if rule is None:
        raise ZooError(f"family {family!r} has no fitted size rule (results/isoflop/ISOFLOP.md): its best size "
                       f"is not yet inside the sizes tried at three budgets")
    a, c = rule
    return 10 ** (c + a * math.log10(tflops))


def fitted_param_scale(family: str, tflops: float) -> float:
    """``family``'s fitted best size at ``tflops`` TFLOP (:func:`fitted_params`) as a parameter scale of
    its default model at that budget (3 significant digits), for :func:`size_for_params`."""
    return _round(fitted_params(family, tflops) / params_at(family, 1.0, float(tflops)))


def _round(size: float) -> float:
    return float(f"{size:.3g}")
