"""HTML building blocks for the run report: escaped text, tables, inline figures, the page.

Every piece of text goes through :func:`html.escape`; figures are embedded as base64 PNG data
URIs so the page needs no other file.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Container, Iterable, Mapping, Sequence
from typing import Any

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2328;
       max-width: 1100px; margin: 2rem auto; padding: 0 1rem; line-height: 1.45; }
h1 { margin-bottom: 0.2rem; }
h2 { border-bottom: 1px solid #d0d7de; padding-bottom: 0.3rem; margin-top: 2.2rem; }
.subtitle { color: #656d76; margin-top: 0; }
.table-scroll { overflow-x: auto; max-width: 100%; margin: 0.6rem 0 1rem; }
table { border-collapse: collapse; font-size: 0.92rem; }
th, td { border: 1px solid #d0d7de; padding: 0.3rem 0.65rem; text-align: left; }
th { background: #f6f8fa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
figure { margin: 1rem 0; }
figure img { max-width: 100%; border: 1px solid #eaeef2; }
figcaption { color: #656d76; font-size: 0.9rem; }
pre { background: #f6f8fa; padding: 0.8rem; overflow-x: auto; font-size: 0.85rem; }
.note { color: #656d76; font-style: italic; }
tr.highlight td { background: #fff8c5; font-weight: 600; }
"""


def esc(value: Any) -> str:
    """``str(value)`` with HTML special characters escaped (quotes included)."""
    return html.escape(str(value), quote=True)


def format_value(value: Any) -> str:
    """Readable text for a table cell: 4 decimals for floats, ``n/a`` for None or NaN."""
    if value is None:
        return "n/a"
    if isinstance(value, bool | int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:.4f}" if value == 0 or abs(value) >= 1e-3 else f"{value:.3e}"
    if isinstance(value, list | tuple):
        return ", ".join(format_value(v) for v in value)
    return str(value)


def _cell(value: Any, tag: str = "td") -> str:
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    css = ' class="num"' if numeric and tag == "td" else ""
    return f"<{tag}{css}>{esc(format_value(value))}</{tag}>"


def table(
    header: Sequence[str], rows: Iterable[Sequence[Any]], highlight: Container[int] = ()
) -> str:
    """An HTML table; cells are formatted with :func:`format_value` and escaped.

    Rows whose index is in ``highlight`` get the ``highlight`` class (shaded, bold).
    """
    head = "".join(_cell(h, "th") for h in header)
    body = "".join(
        ('<tr class="highlight">' if i in highlight else "<tr>")
        + "".join(_cell(v) for v in row)
        + "</tr>"
        for i, row in enumerate(rows)
    )
    return table_markup(head, body)


def table_markup(head: str, body: str) -> str:
    """A ``<table>`` of built header cells and body rows, in a box that scrolls sideways when
    the table is wider than the page (many hyperparameters), so the page itself does not."""
    table_html = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    return f'<div class="table-scroll">{table_html}</div>'


FILES_SHOWN = 50  # files a file list names; the rest are counted


def file_list(title: str, files: Sequence[Mapping[str, Any]], listed_in: str) -> list[str]:
    """``title (n)`` and a table of the first :data:`FILES_SHOWN` ``files`` by ``path`` and
    ``reason``, with a note that the rest are in ``listed_in``; nothing for no files."""
    if not files:
        return []
    rows = [(f.get("path"), f.get("reason")) for f in files[:FILES_SHOWN]]
    parts = [f"<h3>{esc(title)} ({len(files)})</h3>", table(("file", "reason"), rows)]
    if len(files) > FILES_SHOWN:
        more = len(files) - FILES_SHOWN
        parts.append(paragraph(f"... and {more} more ({listed_in} lists them all).", "note"))
    return parts


def key_value_table(mapping: Mapping[str, Any], header: Sequence[str] = ("name", "value")) -> str:
    """A two-column table of ``mapping``; nested mappings become dotted keys."""
    return table(header, flatten(mapping).items())


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def figure(png: bytes, caption: str) -> str:
    """An inline ``<figure>`` holding ``png`` as a base64 data URI."""
    data = base64.b64encode(png).decode("ascii")
    alt = esc(caption)
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{alt}">'
        f"<figcaption>{alt}</figcaption></figure>"
    )


def section(title: str, *parts: str) -> str:
    """An ``<h2>`` section; ``parts`` are already-built HTML fragments."""
    return f"<section><h2>{esc(title)}</h2>{''.join(parts)}</section>"


def paragraph(text: str, css_class: str | None = None) -> str:
    """An escaped ``<p>``."""
    attr = f' class="{esc(css_class)}"' if css_class else ""
    return f"<p{attr}>{esc(text)}</p>"


def preformatted(text: str) -> str:
    """An escaped ``<pre>`` block."""
    return f"<pre>{esc(text)}</pre>"


def page(title: str, subtitle: str, body: Sequence[str]) -> str:
    """The whole self-contained HTML document."""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{_CSS}</style></head>"
        f"<body><h1>{esc(title)}</h1>"
        f'<p class="subtitle">{esc(subtitle)}</p>{"".join(body)}</body></html>\n'
    )
