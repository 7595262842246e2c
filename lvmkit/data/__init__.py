"""Readers for data sets on disk (see DESIGN.md)."""

from lvmkit.data.amat import read_amat

__all__ = ["read_amat"]
