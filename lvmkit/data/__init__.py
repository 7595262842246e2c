"""Readers for data sets on disk (see DESIGN.md): CSV, NumPy, Parquet, IDX, .amat, image folders."""

from lvmkit.data.amat import read_amat
from lvmkit.data.idx import load_mnist, read_idx
from lvmkit.data.readers import Dataset, read_data, read_dataset

__all__ = ["Dataset", "load_mnist", "read_amat", "read_data", "read_dataset", "read_idx"]
