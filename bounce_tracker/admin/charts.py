"""Server-rendered SVG charts for the admin: no JavaScript, no network, no dependencies.

:func:`stacked_bar_chart` draws one bar per category (a day) with one stacked
segment per series (a kind). It is built to be read without colour and without
sight: every series has its own fill *and* its own hatching pattern, the legend
names each one in text, each bar has a tooltip (``<title>``) with its numbers, and
the ``<svg>`` carries ``role="img"``, a ``<title>`` and a ``<desc>`` for screen
readers. Colours come from the Django admin's CSS variables (with the light theme's
values as fallbacks), so the chart follows the admin's light and dark themes.

Every piece of text is escaped (:func:`~django.utils.html.format_html` /
:func:`~django.utils.html.escape`); only the assembled markup is marked safe.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

SVG_NAMESPACE = "http://www.w3.org/2000/svg"

_ID_PREFIX_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
#: Side of a pattern tile, in pixels.
_TILE = 6


@dataclass(frozen=True)
class Series:
    """One stacked segment of every bar: its legend label and one value per category."""

    label: str
    values: Sequence[int]


@dataclass(frozen=True)
class _SeriesStyle:
    """How a series is drawn: a fill colour, an ink colour and a hatching shape."""

    fill: str  # CSS colour of the tile's background
    ink: str  # CSS colour of the hatching
    pattern: str  # name, for readers of the markup
    shape: str  # SVG path data of the hatching within one tile


# Series take these styles in order (and wrap round after the last one). The fills
# are admin CSS variables, so the chart follows the admin's light and dark themes;
# the ink of each hatching is chosen to contrast with its fill in both themes.
_STYLES = (
    _SeriesStyle(
        fill="var(--error-fg, #ba2121)",
        ink="var(--body-bg, #fff)",
        pattern="stripes",
        shape="M-1,1 l2,-2 M0,6 l6,-6 M5,7 l2,-2",
    ),
    _SeriesStyle(
        fill="var(--accent, #f5dd5d)",
        ink="var(--secondary, #417690)",
        pattern="dots",
        shape="M3,2 a1,1 0 1,0 0.01,0",
    ),
    _SeriesStyle(
        fill="var(--secondary, #417690)",
        ink="var(--body-bg, #fff)",
        pattern="crosshatch",
        shape="M0,0 l6,6 M6,0 l-6,6",
    ),
    _SeriesStyle(
        fill="var(--primary, #79aec8)",
        ink="var(--body-fg, #333)",
        pattern="horizontal lines",
        shape="M0,3 h6",
    ),
    _SeriesStyle(
        fill="var(--message-success-bg, #dfd)",
        ink="var(--body-fg, #333)",
        pattern="vertical lines",
        shape="M3,0 v6",
    ),
    _SeriesStyle(
        fill="var(--body-quiet-color, #666)",
        ink="var(--body-bg, #fff)",
        pattern="back stripes",
        shape="M-1,5 l2,2 M0,0 l6,6 M5,-1 l2,2",
    ),
    _SeriesStyle(
        fill="var(--border-color, #ccc)",
        ink="var(--body-fg, #333)",
        pattern="grid",
        shape="M0,0.5 h6 M0.5,0 v6",
    ),
    _SeriesStyle(
        fill="var(--message-error-bg, #ffefef)",
        ink="var(--error-fg, #ba2121)",
        pattern="checks",
        shape="M0,0 h3 v3 h-3 z M3,3 h3 v3 h-3 z",
    ),
)


@dataclass(frozen=True)
class _Layout:
    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int

    @property
    def plot_width(self) -> float:
        return self.width - self.left - self.right

    @property
    def plot_height(self) -> float:
        return self.height - self.top - self.bottom

    @property
    def baseline(self) -> float:
        return self.height - self.bottom


def nice_axis_step(maximum: int, target_ticks: int = 5) -> int:
    """A whole-number tick step of 1, 2 or 5 times a power of ten giving about ``target_ticks``."""
    if maximum <= target_ticks:
        return 1
    raw = maximum / target_ticks
    magnitude = 10 ** math.floor(math.log10(raw))
    for multiple in (1, 2, 5, 10):
        if raw <= multiple * magnitude:
            return int(multiple * magnitude)
    return int(10 * magnitude)  # pragma: no cover - the loop always returns


def _number(value: float) -> str:
    """A coordinate without needless decimals."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _style_for(index: int) -> _SeriesStyle:
    return _STYLES[index % len(_STYLES)]


def _stylesheet(prefix: str, series_count: int) -> str:
    """Rules for the chart's classes; constants and the validated prefix only (no quotes)."""
    rules = [
        f"#{prefix} .{prefix}-text {{ fill: var(--body-fg, #333); font-size: 12px; }}",
        f"#{prefix} .{prefix}-quiet {{ fill: var(--body-quiet-color, #666); }}",
        f"#{prefix} .{prefix}-grid {{ stroke: var(--hairline-color, #e8e8e8); }}",
        f"#{prefix} .{prefix}-axis {{ stroke: var(--body-quiet-color, #666); }}",
        f"#{prefix} .{prefix}-segment {{ stroke: var(--body-bg, #fff); stroke-width: 0.5; }}",
        f"#{prefix} .{prefix}-swatch {{ stroke: var(--body-fg, #333); stroke-width: 0.5; }}",
        f"#{prefix} .{prefix}-hit {{ fill: var(--body-fg, #333); fill-opacity: 0; }}",
        f"#{prefix} .{prefix}-hit:hover {{ fill-opacity: 0.08; }}",
    ]
    for index in range(series_count):
        style = _style_for(index)
        rules.append(f"#{prefix} .{prefix}-fill-{index} {{ fill: {style.fill}; }}")
        rules.append(
            f"#{prefix} .{prefix}-ink-{index} "
            f"{{ stroke: {style.ink}; fill: {style.ink}; stroke-width: 1.2; }}"
        )
    return escape("\n".join(rules))


def _patterns(prefix: str, series_count: int) -> list[SafeString]:
    parts = []
    for index in range(series_count):
        style = _style_for(index)
        parts.append(
            format_html(
                '<pattern id="{prefix}-pattern-{index}" data-pattern="{name}" width="{tile}" '
                'height="{tile}" patternUnits="userSpaceOnUse">'
                '<rect width="{tile}" height="{tile}" class="{prefix}-fill-{index}"/>'
                '<path d="{shape}" class="{prefix}-ink-{index}"/></pattern>',
                prefix=prefix,
                index=index,
                name=style.pattern,
                tile=_TILE,
                shape=style.shape,
            )
        )
    return parts


def _legend(prefix: str, series: Sequence[Series], layout: _Layout) -> tuple[list[SafeString], int]:
    """The legend's markup, laid out in rows above the plot, and the height it takes."""
    parts = [format_html('<g class="{}-legend">', prefix)]
    x, y, row_height = layout.left, 8, 20
    for index, one in enumerate(series):
        text = f"{one.label} ({sum(one.values)})"
        item_width = 20 + round(6.5 * len(text)) + 20
        if x + item_width > layout.width - layout.right and x > layout.left:
            x, y = layout.left, y + row_height
        parts.append(
            format_html(
                '<rect x="{x}" y="{y}" width="14" height="14" '
                'fill="url(#{prefix}-pattern-{index})" class="{prefix}-swatch"/>'
                '<text x="{text_x}" y="{text_y}" class="{prefix}-text">{text}</text>',
                x=x,
                y=y,
                prefix=prefix,
                index=index,
                text_x=x + 20,
                text_y=y + 12,
                text=text,
            )
        )
        x += item_width
    parts.append(mark_safe("</g>"))
    return parts, y + row_height + 8


def _y_axis(
    prefix: str, layout: _Layout, scale_max: int, step: int, label: str
) -> list[SafeString]:
    parts = []
    for value in range(0, scale_max + 1, step):
        y = layout.baseline - value / scale_max * layout.plot_height
        parts.append(
            format_html(
                '<line x1="{x1}" x2="{x2}" y1="{y}" y2="{y}" class="{prefix}-grid"/>'
                '<line x1="{tick}" x2="{x1}" y1="{y}" y2="{y}" class="{prefix}-axis"/>'
                '<text x="{text_x}" y="{text_y}" text-anchor="end" class="{prefix}-text">'
                "{value}</text>",
                x1=layout.left,
                x2=layout.width - layout.right,
                y=_number(y),
                tick=layout.left - 4,
                text_x=layout.left - 6,
                text_y=_number(y + 4),
                prefix=prefix,
                value=value,
            )
        )
    middle = layout.top + layout.plot_height / 2
    parts.append(
        format_html(
            '<line x1="{x}" x2="{x}" y1="{top}" y2="{bottom}" class="{prefix}-axis"/>'
            '<text x="14" y="{middle}" text-anchor="middle" transform="rotate(-90 14 {middle})" '
            'class="{prefix}-text">{label}</text>',
            x=layout.left,
            top=layout.top,
            bottom=_number(layout.baseline),
            prefix=prefix,
            middle=_number(middle),
            label=label,
        )
    )
    return parts


def _x_axis(
    prefix: str, layout: _Layout, categories: Sequence[str], label: str
) -> list[SafeString]:
    count = len(categories)
    slot = layout.plot_width / count
    # About ten labels, counted back from the last category so that it is always labelled.
    every = max(1, math.ceil(count / 10))
    parts = [
        format_html(
            '<line x1="{x1}" x2="{x2}" y1="{y}" y2="{y}" class="{prefix}-axis"/>',
            x1=layout.left,
            x2=layout.width - layout.right,
            y=_number(layout.baseline),
            prefix=prefix,
        )
    ]
    for index in range(count - 1, -1, -every):
        x = layout.left + slot * (index + 0.5)
        parts.append(
            format_html(
                '<line x1="{x}" x2="{x}" y1="{y1}" y2="{y2}" class="{prefix}-axis"/>'
                '<text x="{x}" y="{text_y}" text-anchor="middle" class="{prefix}-text">'
                "{category}</text>",
                x=_number(x),
                y1=_number(layout.baseline),
                y2=_number(layout.baseline + 4),
                text_y=_number(layout.baseline + 18),
                prefix=prefix,
                category=categories[index],
            )
        )
    parts.append(
        format_html(
            '<text x="{x}" y="{y}" text-anchor="middle" class="{prefix}-text">{label}</text>',
            x=_number(layout.left + layout.plot_width / 2),
            y=layout.height - 6,
            prefix=prefix,
            label=label,
        )
    )
    return parts


def bar_tooltip(category: str, series: Sequence[Series], index: int, empty_text: str) -> str:
    """The words for one bar, e.g. ``"3 May: 4 hard bounce, 1 soft bounce"``."""
    counts = [f"{one.values[index]} {one.label}" for one in series if one.values[index]]
    return f"{category}: {', '.join(counts) if counts else empty_text}"


def _bars(
    prefix: str,
    layout: _Layout,
    categories: Sequence[str],
    series: Sequence[Series],
    scale_max: int,
    empty_text: str,
) -> list[SafeString]:
    slot = layout.plot_width / len(categories)
    bar_width = max(slot * 0.7, 1)
    parts = []
    for index, category in enumerate(categories):
        x = layout.left + slot * index
        parts.append(
            format_html(
                '<g class="{prefix}-bar"><title>{tooltip}</title>'
                '<rect x="{x}" y="{top}" width="{width}" height="{height}" class="{prefix}-hit"/>',
                prefix=prefix,
                tooltip=bar_tooltip(category, series, index, empty_text),
                x=_number(x),
                top=layout.top,
                width=_number(slot),
                height=_number(layout.plot_height),
            )
        )
        bottom = layout.baseline
        for series_index, one in enumerate(series):
            value = one.values[index]
            if not value:
                continue
            height = value / scale_max * layout.plot_height
            bottom -= height
            parts.append(
                format_html(
                    '<rect x="{x}" y="{y}" width="{width}" height="{height}" '
                    'fill="url(#{prefix}-pattern-{series_index})" class="{prefix}-segment"/>',
                    x=_number(x + (slot - bar_width) / 2),
                    y=_number(bottom),
                    width=_number(bar_width),
                    height=_number(height),
                    prefix=prefix,
                    series_index=series_index,
                )
            )
        parts.append(mark_safe("</g>"))
    return parts


def stacked_bar_chart(
    *,
    categories: Sequence[str],
    series: Sequence[Series],
    title: str,
    description: str,
    x_axis_label: str,
    y_axis_label: str,
    id_prefix: str = "chart",
    empty_text: str = "none",
    width: int = 960,
    height: int = 380,
) -> SafeString:
    """An accessible stacked bar chart as an inline ``<svg>`` element (safe to output as is).

    ``categories`` label the bars from left to right (e.g. days); each series gives
    one value per category, stacked bottom-up in the order given. ``title`` and
    ``description`` become the ``<title>`` and ``<desc>`` that screen readers announce
    (``description`` should summarise the numbers in words). ``id_prefix`` keeps the
    element IDs unique when a page shows several charts. ``empty_text`` ends the
    tooltip of a bar with no values (``"3 May: none"``).
    """
    if not _ID_PREFIX_RE.match(id_prefix):
        raise ValueError(f"id_prefix must be a letter then letters, digits, - or _: {id_prefix!r}")
    if not categories:
        raise ValueError("a chart needs at least one category")
    for one in series:
        if len(one.values) != len(categories):
            raise ValueError(
                f"series {one.label!r} has {len(one.values)} values "
                f"for {len(categories)} categories"
            )
    prefix = id_prefix
    provisional = _Layout(width, height, left=56, right=28, top=0, bottom=44)
    legend, legend_height = _legend(prefix, series, provisional)
    layout = _Layout(width, height, left=56, right=28, top=legend_height, bottom=44)

    highest = max(
        (sum(values) for values in zip(*(s.values for s in series), strict=True)), default=0
    )
    step = nice_axis_step(highest)
    scale_max = max(step * math.ceil(highest / step), step * 5 if highest <= 5 else step)

    parts = [
        format_html(
            '<svg xmlns="{ns}" id="{prefix}" class="{prefix}" role="img" '
            'aria-labelledby="{prefix}-title" aria-describedby="{prefix}-desc" '
            'viewBox="0 0 {width} {height}" width="100%" preserveAspectRatio="xMidYMid meet">'
            '<title id="{prefix}-title">{title}</title>'
            '<desc id="{prefix}-desc">{description}</desc>',
            ns=SVG_NAMESPACE,
            prefix=prefix,
            width=width,
            height=height,
            title=title,
            description=description,
        ),
        format_html("<style>{}</style>", _stylesheet(prefix, len(series))),
        mark_safe("<defs>"),
        *_patterns(prefix, len(series)),
        mark_safe("</defs>"),
        *legend,
        *_y_axis(prefix, layout, scale_max, step, y_axis_label),
        *_bars(prefix, layout, categories, series, scale_max, empty_text),
        *_x_axis(prefix, layout, categories, x_axis_label),
        mark_safe("</svg>"),
    ]
    # Every part above is already escaped markup (format_html or a literal tag).
    return mark_safe("".join(parts))
