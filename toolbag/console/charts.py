"""Small inline SVG charts, computed here as numbers only; the template draws them (no chart library)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

WIDTH = 240
HEIGHT = 48


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    value: int
    label: str


@dataclass(frozen=True)
class Chart:
    bars: list[Bar]
    peak: int
    total: int
    width: int = WIDTH
    height: int = HEIGHT


def bar_chart(values: Sequence[int], *, width: int = WIDTH, height: int = HEIGHT) -> Chart:
    """Bars for ``values`` (one per minute, oldest first), scaled to the peak; a zero is a 1-pixel stub."""
    peak = max(values, default=0)
    count = max(1, len(values))
    step = width / count
    bars = []
    for i, value in enumerate(values):
        h = (value / peak) * (height - 2) if peak else 0.0
        h = max(h, 1.0)
        minutes_ago = count - i
        bars.append(Bar(round(i * step, 2), round(height - h, 2), round(max(step - 1, 1), 2), round(h, 2), value,
                        f"{value} ({minutes_ago} min ago)"))
    return Chart(bars, peak, sum(values), width, height)


def share(part: float, whole: float) -> float:
    """``part / whole`` as a percentage, 0 when ``whole`` is 0."""
    return round(100.0 * part / whole, 1) if whole else 0.0
