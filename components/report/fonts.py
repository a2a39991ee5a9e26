"""Fonts for the report's figures: DejaVu Sans (matplotlib's own), then one installed font for
each script it lacks, so class names written in Chinese, Japanese, Korean, Hindi or Thai draw as
text rather than as empty boxes.

matplotlib falls back glyph by glyph only along the families named in ``font.family`` (3.6+);
its default names DejaVu Sans alone. A family that is not installed would log a warning on every
figure, so only the installed ones are named. matplotlib lists the installed fonts once, in its
cache (``matplotlib.get_cachedir()``): a font installed later is seen once that cache is deleted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import matplotlib
from matplotlib import font_manager

BASE_FONT = "DejaVu Sans"
# Per script DejaVu Sans lacks: fonts that cover it, in order of preference (Linux packages
# first, then the fonts macOS and Windows ship).
SCRIPT_FONTS: Mapping[str, tuple[str, ...]] = {
    "CJK": (
        "Noto Sans CJK SC",
        "Noto Sans CJK JP",
        "Noto Sans CJK TC",
        "Noto Sans CJK KR",
        "Source Han Sans SC",
        "Source Han Sans",
        "WenQuanYi Zen Hei",
        "WenQuanYi Micro Hei",
        "Droid Sans Fallback",
        "IPAexGothic",
        "IPAGothic",
        "Hiragino Sans",
        "PingFang SC",
        "Apple SD Gothic Neo",
        "Microsoft YaHei",
        "SimHei",
        "Yu Gothic",
        "Malgun Gothic",
        "Arial Unicode MS",
    ),
    "Devanagari": ("Noto Sans Devanagari", "Lohit Devanagari", "Kohinoor Devanagari", "Mangal"),
    "Bengali": ("Noto Sans Bengali", "Lohit Bengali", "Kohinoor Bangla", "Vrinda"),
    "Tamil": ("Noto Sans Tamil", "Lohit Tamil", "Tamil Sangam MN", "Latha"),
    "Thai": ("Noto Sans Thai", "TLWG Typist", "Thonburi", "Tahoma"),
}


def figure_fonts(
    installed: Iterable[str], script_fonts: Mapping[str, tuple[str, ...]] = SCRIPT_FONTS
) -> list[str]:
    """The families figures draw with: :data:`BASE_FONT`, then for each script the first of
    its fonts in ``installed`` (family names); a script with none installed is left out."""
    installed = set(installed)
    chosen = [BASE_FONT]
    for fonts in script_fonts.values():
        chosen += [font for font in fonts if font in installed][:1]
    return list(dict.fromkeys(chosen))


def use_figure_fonts(script_fonts: Mapping[str, tuple[str, ...]] = SCRIPT_FONTS) -> list[str]:
    """Make matplotlib draw new text with :func:`figure_fonts` of the installed fonts (sets
    ``font.family``); return that list."""
    installed = (font.name for font in font_manager.fontManager.ttflist)
    families = figure_fonts(installed, script_fonts)
    matplotlib.rcParams["font.family"] = families
    return families
