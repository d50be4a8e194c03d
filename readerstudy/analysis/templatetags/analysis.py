"""Number formats of the results pages: per cent, p-values."""

import math

from django import template

register = template.Library()


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


@register.filter
def pct(value, digits: int = 1) -> str:
    """0.8214 → "82.1 %"; missing → "–"."""
    return "–" if _missing(value) else f"{100 * float(value):.{digits}f} %"


@register.filter
def num(value, digits: int = 3) -> str:
    """A number to ``digits`` decimals; missing → "–"."""
    return "–" if _missing(value) else f"{float(value):.{int(digits)}f}"


@register.filter
def pvalue(value) -> str:
    """p to three decimals, "< 0.001" below that; missing → "–"."""
    if _missing(value):
        return "–"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


@register.filter
def known(value) -> bool:
    """False for a missing value (None or NaN)."""
    return not _missing(value)


@register.filter
def split(value: str) -> list[str]:
    """ "a b c" → ["a", "b", "c"]."""
    return value.split()


@register.filter
def get(mapping, key):
    """mapping[key] (None when absent), for keys chosen in the template."""
    return mapping.get(key) if hasattr(mapping, "get") else None
