"""How inputs look in figures: de-normalised to their natural scale, as images, signals or bars.

Models see standardised inputs (``(x - mean) / std`` with the dataset's ``meta.json``
normalisation); people should see the data as it was: a digit in its 0..16 grey levels, a photo
in its colours. :class:`InputScale` undoes the standardisation, once, for every figure that draws
an input, a decoded prototype or a pushed prototype's source. Images ``(C, H, W)`` with 1 or 3
channels are drawn as pictures, signals ``(C, L)`` as one line per channel (the first few), and
other shapes (tabular rows) as bars of their standardised values: their features have unrelated
units, so natural-scale bars would show only the largest feature. A row of up to
:data:`NAMED_BARS` columns (named features; a column of words is one, its 0/1 features
together) gets one horizontal bar per column, labelled with its name and natural value
(``age = 52``, ``sex = m``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.colors import Colormap, ListedColormap, Normalize
from matplotlib.image import AxesImage
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from components.data.reader import named_features, per_feature, word_features

SIGNAL_CHANNELS = 3  # channels of a signal drawn as lines; the rest are left out
_LINE_COLOURS = ("#1f4e79", "#c0392b", "#2e8b57")
# similarity overlay: transparent where low, opaque warm colours where high (ProtoPNet's heat map)
_HEAT = colormaps["turbo"](np.linspace(0.0, 1.0, 256))
_HEAT[:, 3] = np.linspace(0.0, 0.75, 256) ** 1.5
HEAT_CMAP = ListedColormap(_HEAT, name="similarity_overlay")


def is_image(feature_shape: Sequence[int]) -> bool:
    """True for ``(C, H, W)`` with 1 (grey) or 3 (RGB) channels."""
    return len(feature_shape) == 3 and feature_shape[0] in (1, 3)


def is_signal(feature_shape: Sequence[int]) -> bool:
    """True for ``(C, L)``: channels of a 1-D signal (time series)."""
    return len(feature_shape) == 2


def _broadcast(values, feature_shape: tuple[int, ...]) -> np.ndarray | None:
    """Normalisation statistics shaped like one sample (per-channel ones broadcast); None when
    missing or of another size."""
    if values is None:
        return None
    array = per_feature(np.ravel(values), feature_shape).astype(float)
    return array.reshape(feature_shape) if array.size == int(np.prod(feature_shape)) else None


NAMED_BARS = 16  # a tabular sample with at most this many columns: one named bar each
_ONE_HOT_TOLERANCE = 0.005  # a word feature this close to 0 or 1 is (float32 round-off) 0 or 1


@dataclass(frozen=True)
class InputScale:
    """Undo the dataset's standardisation and map values to display intensities.

    Attributes:
        feature_shape: shape of one sample.
        mean: normalisation mean broadcastable over one sample, or None (values shown as given).
        std: normalisation std, same shape rules as ``mean``.
        value_range: natural ``(low, high)`` of the data: images are drawn with ``low`` black
            and ``high`` white (clipped); None scales each picture by its own min and max.
        feature_names: the name of each feature of a flat (tabular) sample, e.g. its column's,
            or None (figures then write ``x<i>``).
        categories: each word column of a table with the indices of its 0/1 features
            (``column=word``), for attributions summed per column (:meth:`by_column`).
    """

    feature_shape: tuple[int, ...]
    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    value_range: tuple[float, float] | None = None
    feature_names: tuple[str, ...] | None = None
    categories: tuple[tuple[str, tuple[int, ...]], ...] = ()

    @classmethod
    def from_meta(
        cls, data_meta: Mapping, feature_shape: Sequence[int], shown: np.ndarray | None = None
    ) -> InputScale:
        """The scale of a dataset from its ``meta.json`` contents.

        Args:
            data_meta: the dataset's meta (``normalization.mean/std``, ``kind``,
                ``feature_names``).
            feature_shape: shape of one sample.
            shown: standardised inputs drawn in the report; their de-normalised range is the
                natural range of data that is not ``kind: image`` (e.g. 0..16 for digits).
                Decoded images (``kind: image``) are pixels in ``[0, 1]``.
        """
        shape = tuple(int(d) for d in feature_shape)
        normalization = data_meta.get("normalization") or {}
        mean, std = (_broadcast(normalization.get(k), shape) for k in ("mean", "std"))
        if mean is None or std is None:
            mean = std = None
        names = named_features(data_meta, shape)
        scale = cls(
            shape, mean, std, feature_names=names, categories=_word_columns(data_meta, names)
        )
        if data_meta.get("kind") == "image":
            return replace(scale, value_range=(0.0, 1.0))
        if shown is not None and np.size(shown):
            natural = scale.denormalize(np.asarray(shown, dtype=float).reshape(-1, *shape))
            low, high = float(np.min(natural)), float(np.max(natural))
            if high > low:
                return replace(scale, value_range=(low, high))
        return scale

    def by_column(self, attributions, sample) -> tuple[np.ndarray, list[str]]:
        """A tabular sample's attributions with each word column's 0/1 features summed into one
        (the column's share, as for SHAP values of one-hot features), named ``column = word``
        by the word ``sample`` (standardised) holds; the other features as they are."""
        values = np.asarray(attributions, dtype=float).ravel()
        rows = self.columns(sample)
        return np.asarray([values[list(m)].sum() for m, _, _ in rows]), [n for _, n, _ in rows]

    def columns(self, sample) -> list[tuple[tuple[int, ...], str, int]]:
        """A tabular sample (standardised) as its source columns: for each, its features'
        indices, its name (a word column's as ``column = word``, by the word the sample holds)
        and the feature that stands for it (a word column's held word)."""
        names = list(self.feature_names or [f"x{i}" for i in range(np.size(sample))])
        natural = self.denormalize(sample).ravel()
        first = {members[0]: (column, members) for column, members in self.categories}
        grouped = {i for _, members in self.categories for i in members}
        rows = []
        for i in range(natural.size):
            if i in first:
                column, members = first[i]
                held = members[int(np.argmax(natural[list(members)]))]
                word = _word(names[held].removeprefix(f"{column}="), natural[held])
                rows.append((members, f"{column} = {word}", held))
            elif i not in grouped:
                rows.append(((i,), names[i], i))
        return rows

    def denormalize(self, values) -> np.ndarray:
        """``x * std + mean``: standardised values (one sample or a batch) in natural units."""
        values = np.asarray(values, dtype=float)
        batched = values.size != int(np.prod(self.feature_shape))
        values = (
            values.reshape(-1, *self.feature_shape)
            if batched
            else values.reshape(self.feature_shape)
        )
        if self.mean is None:
            return values
        return values * self.std + self.mean

    def to_unit(self, values) -> np.ndarray:
        """One sample de-normalised and mapped to ``[0, 1]`` by :attr:`value_range`."""
        natural = self.denormalize(values)
        low, high = self.value_range or (float(natural.min()), float(natural.max()))
        if high <= low:
            return np.zeros_like(natural)
        return np.clip((natural - low) / (high - low), 0.0, 1.0)


def _word_columns(data_meta: Mapping, names) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """The word columns of ``data_meta["categories"]`` with the indices of their features."""
    features = word_features(data_meta, names)
    columns: dict[str, list[int]] = {}
    for i, name in enumerate(names or ()):
        if name in features:
            columns.setdefault(features[name][0], []).append(i)
    return tuple((column, tuple(members)) for column, members in columns.items())


def identity_scale(feature_shape: Sequence[int]) -> InputScale:
    """A scale without normalisation statistics (values are drawn as given)."""
    return InputScale(tuple(int(d) for d in feature_shape))


def _no_ticks(ax: Axes) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def image_pixels(values, scale: InputScale) -> np.ndarray:
    """What ``imshow`` draws for an image sample: ``(H, W)`` grey or ``(H, W, 3)`` RGB in
    ``[0, 1]``."""
    unit = scale.to_unit(values)
    return unit[0] if unit.shape[0] == 1 else np.transpose(unit, (1, 2, 0))


def draw_sample(ax: Axes, values, scale: InputScale) -> None:
    """An input or prototype in its natural scale: picture, signal lines, or feature bars."""
    shape = scale.feature_shape
    if is_image(shape):
        ax.imshow(image_pixels(values, scale), cmap="gray", vmin=0.0, vmax=1.0)
        _no_ticks(ax)
    elif is_signal(shape):
        draw_signal(ax, scale.denormalize(values), 0)
    elif scale.feature_names and len(scale.columns(values)) <= NAMED_BARS:
        _draw_columns(ax, values, scale)
    else:
        flat = np.asarray(values, dtype=float).ravel()
        ax.bar(np.arange(flat.size), flat, color="#4c8bc9")
        ax.axhline(0.0, color="#666666", linewidth=0.6)
        ax.tick_params(labelsize=6)


def _draw_columns(ax: Axes, values, scale: InputScale) -> None:
    """A table's row as one horizontal bar per source column, its standardised value (a word
    column's: its held word's 0/1 feature), labelled with the name and natural value
    (``age = 52``, ``sex = m``)."""
    flat = np.asarray(values, dtype=float).ravel()
    natural = scale.denormalize(flat).ravel()
    spread = 1.0 if scale.std is None else np.abs(scale.std).ravel()
    natural[np.abs(natural) < 1e-5 * spread] = 0.0  # float32 round-off of a 0, not -7e-9
    columns = scale.columns(flat)
    words = {i for _, members in scale.categories for i in members}
    rows = np.arange(len(columns))
    ax.barh(rows, [flat[shown] for _, _, shown in columns], color="#4c8bc9")
    labels = [
        name if shown in words else f"{name} = {_value(natural[shown])}"
        for _, name, shown in columns
    ]
    ax.set_yticks(rows, labels)
    ax.invert_yaxis()  # the first column on top, as the file has them
    ax.axvline(0.0, color="#666666", linewidth=0.6)
    ax.tick_params(labelsize=5)


def _value(value: float) -> str:
    """4 significant digits, without an exponent from 0.001 to a million (``37390``, not
    ``3.739e+04``)."""
    if value == 0 or 1e-3 <= abs(value) < 1e6:
        return np.format_float_positional(
            value, precision=4, unique=False, fractional=False, trim="-"
        )
    return f"{value:.4g}"


def _word(word: str, share: float) -> str:
    """A word column's label: its word when the row holds it, ``(none)`` when it holds no
    word (a filled missing value), the likeliest word and its share for a mix (a decoded
    prototype)."""
    if share >= 1 - _ONE_HOT_TOLERANCE:
        return word
    if share <= _ONE_HOT_TOLERANCE:
        return "(none)"
    return f"{word} ({share:.2f})"


def draw_signal(ax: Axes, natural: np.ndarray, start: int) -> None:
    """The first :data:`SIGNAL_CHANNELS` channels of ``natural`` ``(C, l)`` as lines, the
    x axis counting positions from ``start``."""
    positions = np.arange(start, start + natural.shape[-1])
    for channel, line in enumerate(natural[:SIGNAL_CHANNELS]):
        ax.plot(positions, line, color=_LINE_COLOURS[channel], linewidth=0.9)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=4, integer=True))
    ax.tick_params(labelsize=6)
    ax.margins(x=0)


def draw_region(ax: Axes, box: Sequence[float], scale: InputScale, colour: str) -> None:
    """Mark a region ``(top, left, height, width)``: a box on an image, a band on a signal."""
    top, left, height, width = box
    if is_signal(scale.feature_shape):
        ax.axvspan(left - 0.5, left + width - 0.5, color=colour, alpha=0.3, linewidth=0)
        return
    # above the axes frame, so a region along the border stays visible
    box = Rectangle((left - 0.5, top - 0.5), width, height, fill=False, ec=colour, lw=1.8)
    box.set(zorder=3, clip_on=False)
    ax.add_patch(box)


def draw_crop(ax: Axes, values, box: Sequence[int], scale: InputScale, colour: str) -> None:
    """The region ``box`` of a sample alone (an image crop or a signal segment), framed in
    ``colour``."""
    top, left, height, width = (int(v) for v in box)
    if is_signal(scale.feature_shape):
        draw_signal(ax, scale.denormalize(values)[:, left : left + width], left)
    else:
        pixels = image_pixels(values, scale)[top : top + height, left : left + width]
        ax.imshow(pixels, cmap="gray", vmin=0.0, vmax=1.0)
        _no_ticks(ax)
    for spine in ax.spines.values():
        spine.set_edgecolor(colour)
        spine.set_linewidth(2.0)


def draw_similarity(
    ax: Axes,
    similarity: np.ndarray,
    scale: InputScale,
    cmap: Colormap = HEAT_CMAP,
    norm: Normalize | None = None,
) -> AxesImage | None:
    """Overlay a latent similarity map ``(h, w)`` on the drawn image, upsampled bicubically to
    the image's pixels (as the region was found); warm and opaque where similarity is high.
    ``cmap`` and ``norm`` (default: the map's own minimum to maximum) may say otherwise, e.g.
    one scale for many maps. Returns the overlay (None for inputs that are no image)."""
    if not is_image(scale.feature_shape):
        return None
    height, width = scale.feature_shape[1:]
    overlay = ax.imshow(
        np.asarray(similarity, dtype=float),
        cmap=cmap,
        norm=norm,
        interpolation="bicubic",
        interpolation_stage="data",
        extent=(-0.5, width - 0.5, height - 0.5, -0.5),
    )
    ax.set_xlim(-0.5, width - 0.5)
    ax.set_ylim(height - 0.5, -0.5)
    return overlay
