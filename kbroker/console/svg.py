"""Sparklines rendered on the server as inline SVG: no chart library in the browser."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape


def sparkline(series: Sequence[Sequence[float]], *, width: int = 240, height: int = 40,
              colors: Sequence[str] = ("#2e6bd3", "#1e7d32", "#b3261e"), labels: Sequence[str] = (),
              element_id: str | None = None) -> Markup:
    """One ``<svg class="spark">`` drawing each series of ``series`` as a polyline, all on the
    same vertical scale (0 at the bottom, the largest value of all at the top), the newest
    value on the right. A series with fewer than two points is drawn flat; ``labels`` become
    each line's ``<title>`` (a tooltip) and ``data-label``."""
    peak = max((v for s in series for v in s), default=0.0)
    scale = (height - 2) / peak if peak > 0 else 0.0
    parts = []
    for i, values in enumerate(series):
        points = list(values) or [0.0]
        if len(points) == 1:
            points = points * 2
        step = width / (len(points) - 1)
        coords = " ".join(f"{x * step:.1f},{height - 1 - v * scale:.1f}" for x, v in enumerate(points))
        label = labels[i] if i < len(labels) else ""
        title = f"<title>{escape(label)}: {escape(_short(values[-1] if values else 0.0))}</title>" if label else ""
        parts.append(f'<polyline fill="none" stroke="{escape(colors[i % len(colors)])}" stroke-width="1.5" '
                     f'data-label="{escape(label)}" points="{coords}">{title}</polyline>')
    ident = f' id="{escape(element_id)}"' if element_id else ""
    return Markup(f'<svg{ident} class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
                  f'data-peak="{peak:g}" xmlns="http://www.w3.org/2000/svg" role="img">{"".join(parts)}</svg>')


def _short(value: float) -> str:
    return f"{value:.0f}" if value >= 10 else f"{value:.2f}"
