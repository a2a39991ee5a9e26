"""The figure collector the report's sections share: each figure saved as a PNG and inlined."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from components import atomic
from components.report import markup
from components.report.figures import to_png


class FigureSet:
    """Saves each figure to ``<folder>/<name>.png`` and returns its inline HTML.

    Args:
        folder: where the PNG files go (created if missing).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def add(self, name: str, fig: Figure | None, caption: str) -> str:
        """Save ``fig`` as ``<name>.png`` (atomically) and return it as an HTML figure.

        Args:
            name: the file's stem; a later figure of the same name replaces it.
            fig: the figure, or None.
            caption: the figure's caption.

        Returns:
            The ``<figure>`` HTML with the PNG inlined; "" when ``fig`` is None.
        """
        if fig is None:
            return ""
        png = to_png(fig)
        atomic.write_bytes(self.folder / f"{name}.png", png)
        return markup.figure(png, caption)
