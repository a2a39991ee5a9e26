"""Figures fall back, glyph by glyph, to an installed font for scripts DejaVu Sans lacks."""

import warnings

import matplotlib
from matplotlib.figure import Figure

from components.report.figures import to_png
from components.report.fonts import figure_fonts, use_figure_fonts


def _missing_glyphs(text: str) -> list[str]:
    """The "Glyph ... missing" warnings of drawing ``text`` with the current fonts."""
    fig = Figure()
    fig.text(0.1, 0.5, text)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        to_png(fig)
    return [str(w.message) for w in caught if "missing from font" in str(w.message)]


def test_the_first_installed_font_of_each_script_follows_dejavu_sans():
    scripts = {"a": ("No A", "A one", "A two"), "b": ("No B",), "c": ("C",), "d": ("A one",)}
    installed = ["A two", "A one", "C", "Other"]
    assert figure_fonts(installed, scripts) == ["DejaVu Sans", "A one", "C"]
    assert figure_fonts([], scripts) == ["DejaVu Sans"]


def test_a_glyph_dejavu_sans_lacks_is_drawn_from_the_fallback_font():
    # STIXGeneral ships with matplotlib and has the watch sign (U+231A), which DejaVu Sans has
    # not: it stands in for a CJK font, which this machine need not have.
    with matplotlib.rc_context({"font.family": ["sans-serif"]}):
        assert _missing_glyphs("\u231a watch")  # matplotlib's default: an empty box
    with matplotlib.rc_context():
        families = use_figure_fonts({"symbols": ("Not Installed Sans", "STIXGeneral")})
        assert families == ["DejaVu Sans", "STIXGeneral"]
        assert _missing_glyphs("\u231a watch") == []
