"""Data (see DESIGN.md): readers for files on disk (CSV, NumPy, Parquet, IDX, .amat, image
folders) and the sources the fitting loops stream from (arrays, memory
maps, Parquet, CSV shards)."""

from lvmkit.data.amat import read_amat
from lvmkit.data.idx import load_mnist, read_idx
from lvmkit.data.readers import Dataset, read_data, read_dataset
from lvmkit.data.sources import (
    ArraySource,
    CsvSource,
    NpySource,
    ParquetSource,
    Source,
    as_source,
)
from lvmkit.data.text import Corpus, read_documents

__all__ = [
    "ArraySource",
    "Corpus",
    "CsvSource",
    "Dataset",
    "NpySource",
    "ParquetSource",
    "Source",
    "as_source",
    "load_mnist",
    "read_amat",
    "read_data",
    "read_dataset",
    "read_documents",
    "read_idx",
]
