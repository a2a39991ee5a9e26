"""What to ingest: the typed description of one dataset source."""

from __future__ import annotations

import codecs
import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from components.data.errors import DataError

EMBEDDED_SOURCES = ("digits", "breast_cancer", "wine")
FILE_SOURCES = ("parquet", "csv")
SOURCES = (*EMBEDDED_SOURCES, "synthetic", "parts", *FILE_SOURCES, "image_folder")
NORMALIZATIONS = ("dataset", "imagenet")
AUGMENTATIONS = ("none", "light", "protopnet")
MAX_CATEGORIES = 50  # distinct words a categorical feature column may hold, by default


@dataclass(frozen=True)
class DataSpec:
    """A dataset source plus how to split it.

    Args:
        source: One of ``digits``, ``breast_cancer``, ``wine`` (scikit-learn's embedded
            datasets), ``synthetic`` (seeded class-conditional Gaussians of any size), ``parts``
            (seeded RGB images classified by the coloured parts they contain, with part masks),
            ``parquet`` or ``csv`` (a user file), ``image_folder`` (a folder of image files, one
            subfolder per class, optionally under ``train/``, ``val/``, ``test/``).
        path: For ``parquet``/``csv``: a local path or an fsspec URL (``file://``, ``memory://``,
            ``s3://`` ...), for ``parquet`` also a folder of part files or a glob; for
            ``image_folder``: the folder.
        label_column: For ``parquet``/``csv``: the column holding the class labels (integers, or
            class names: text with no numbers in it).
        feature_columns: For ``parquet``/``csv``: either one list-typed column or several scalar
            columns; ``None`` means every column except the label. A scalar column of words
            (text none of whose values is a number) is categorical: one 0/1 feature per word.
        drop_columns: For ``parquet``/``csv``: columns left out of the features (an id, a
            date, free text), the others kept; not together with ``feature_columns``.
        max_categories: For ``parquet``/``csv``: the most distinct words a categorical column
            may hold (more is refused: an id or free text, not categories).
        feature_shape: Optional shape of one sample (e.g. ``(1, 8, 8)``); its product must equal
            the number of features. ``None`` keeps the source's natural shape. For ``parts`` it
            is the generated image shape ``(3, H, W)`` (default ``(3, 32, 32)``).
        val_fraction: Fraction of each class that goes to the validation split.
        test_fraction: Fraction of each class that goes to the test split.
        seed: Seeds the split assignment and the synthetic generator.
        drop_invalid: Drop rows with NaN/inf/missing features, non-integer labels or ragged
            feature lists (counted in the dataset's meta) instead of raising ``DataError``.
        fill_missing: For ``parquet``/``csv``: fill a missing feature value (empty, null, NaN)
            with the training split's mean of its column (a word column's row gets no word:
            all its 0/1 features 0) instead of treating the row as bad.
        encoding: CSV only: the text encoding of the file (any Python codec name, e.g.
            ``latin-1``, ``cp1252``, ``utf-16``).
        num_samples: Synthetic and parts: number of rows.
        num_features: Synthetic only: features per row.
        num_classes: Synthetic and parts: number of classes (parts: 2 to 6).
        class_sep: Synthetic only: norm of each class mean; larger is easier.
        partition_rows: Rows per Dask partition (synthetic) and per Parquet file (all sources;
            for images, files per shard: one Dask task each).
        image_size: Images: the side of the square each image is resized and cropped to (the
            model's input is ``(3, image_size, image_size)``); smaller images are invalid.
        normalization: Images: the per-channel statistics inputs are standardised with:
            ``dataset`` (the train split's) or ``imagenet`` (what pretrained trunks expect).
        augment: Images: training-time augmentation in the training workers, ``none``,
            ``light`` or ``protopnet`` (see :mod:`components.data.image_transforms`); not part
            of the dataset (the fingerprint ignores it).
    """

    source: str = "digits"
    path: str | None = None
    label_column: str = "label"
    feature_columns: tuple[str, ...] | None = None
    drop_columns: tuple[str, ...] = ()
    max_categories: int = MAX_CATEGORIES
    feature_shape: tuple[int, ...] | None = None
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = 0
    drop_invalid: bool = False
    fill_missing: bool = False
    encoding: str = "utf-8"
    num_samples: int = 10_000
    num_features: int = 32
    num_classes: int = 4
    class_sep: float = 2.0
    partition_rows: int = 100_000
    image_size: int = 224
    normalization: str = "dataset"
    augment: str = "none"

    def __post_init__(self) -> None:
        # Configs arrive with lists (YAML); store tuples so the spec stays hashable.
        for name in ("feature_columns", "drop_columns"):  # one column named: a list of one
            if isinstance(getattr(self, name), str):
                object.__setattr__(self, name, (getattr(self, name),))
        for name in ("feature_columns", "drop_columns", "feature_shape"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))
        self._validate()

    def _validate(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"DataSpec.source={self.source!r}: expected one of {SOURCES}")
        if (self.source in FILE_SOURCES or self.source == "image_folder") and not self.path:
            raise ValueError(f"DataSpec.path is required for source={self.source!r}")
        for name in ("val_fraction", "test_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"DataSpec.{name}={value}: expected 0 <= value < 1")
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ValueError(
                f"DataSpec.val_fraction + test_fraction = "
                f"{self.val_fraction + self.test_fraction}: must be < 1 to leave a train split"
            )
        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise ValueError(
                f"DataSpec.encoding={self.encoding!r}: not a text encoding Python knows "
                "(e.g. utf-8, latin-1, cp1252, utf-16)"
            ) from None
        if self.augment not in AUGMENTATIONS:
            raise ValueError(f"DataSpec.augment={self.augment!r}: expected one of {AUGMENTATIONS}")
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(
                f"DataSpec.normalization={self.normalization!r}: expected one of {NORMALIZATIONS}"
            )
        for name in (
            "num_samples",
            "num_features",
            "partition_rows",
            "image_size",
            "max_categories",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"DataSpec.{name}={getattr(self, name)}: must be >= 1")
        if self.num_classes < 2:
            raise ValueError(f"DataSpec.num_classes={self.num_classes}: must be >= 2")
        if not math.isfinite(self.class_sep) or self.class_sep < 0:
            raise ValueError(f"DataSpec.class_sep={self.class_sep}: must be finite and >= 0")
        if self.feature_shape is not None and any(d < 1 for d in self.feature_shape):
            raise ValueError(f"DataSpec.feature_shape={self.feature_shape}: dims must be >= 1")
        if self.feature_columns is not None and not self.feature_columns:
            raise ValueError("DataSpec.feature_columns is empty: use None for 'all but label'")
        if self.feature_columns is not None and self.drop_columns:
            raise ValueError(
                "DataSpec.feature_columns and DataSpec.drop_columns are both set: name the "
                "columns to use, or the columns to leave out, not both"
            )

    def to_dict(self) -> dict[str, Any]:
        """The spec as JSON-ready plain data (tuples become lists)."""
        return {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in dataclasses.asdict(self).items()
        }

    @property
    def num_splits_needed(self) -> int:
        """How many splits each class must populate: train plus every non-empty other split."""
        return 1 + (self.val_fraction > 0) + (self.test_fraction > 0)


_COMMON_FIELDS = (
    "source",
    "feature_shape",
    "val_fraction",
    "test_fraction",
    "seed",
    "partition_rows",
)
_TABLE_FIELDS = (
    "path",
    "label_column",
    "feature_columns",
    "drop_columns",
    "max_categories",
    "drop_invalid",
    "fill_missing",
)
_SOURCE_FIELDS = {
    "synthetic": ("num_samples", "num_features", "num_classes", "class_sep"),
    "parts": ("num_samples", "num_classes"),
    "parquet": _TABLE_FIELDS,
    "csv": (*_TABLE_FIELDS, "encoding"),
    "image_folder": ("path", "drop_invalid", "image_size", "normalization"),
}


# Fields that shape an image dataset, for a Parquet source that turns out to hold images.
IMAGE_FIELDS = ("image_size", "normalization")


def source_fields(source: str, *, images: bool = False) -> tuple[str, ...]:
    """The spec fields that mean something for ``source`` (the rest are ignored by it): what a
    report shows of the data config, and (less ``path``) what the dataset fingerprint covers.

    Args:
        source: The spec's source.
        images: The source holds encoded images (a Parquet file with an image column): add
            :data:`IMAGE_FIELDS`.
    """
    fields = _COMMON_FIELDS + _SOURCE_FIELDS.get(source, ())
    extra = tuple(name for name in IMAGE_FIELDS if images and name not in fields)
    return fields + extra


def resolve_feature_shape(
    spec_shape: tuple[int, ...] | None, natural: tuple[int, ...], *, file: str | None = None
) -> tuple[int, ...]:
    """The sample shape to record: the spec's override if given, else the source's own.

    Raises:
        DataError: The override's size differs from the number of features.
    """
    if spec_shape is None:
        return tuple(natural)
    if math.prod(spec_shape) != math.prod(natural):
        raise DataError(
            f"feature_shape {list(spec_shape)} holds {math.prod(spec_shape)} values but each row "
            f"has {math.prod(natural)} features",
            file=file,
        )
    return tuple(spec_shape)
