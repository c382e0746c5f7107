"""Indexes: the read-only pre-processing results that make unsplittable objects splittable."""

from .store import INDEX_VERSION, Index, IndexStore

__all__ = ["INDEX_VERSION", "Index", "IndexStore"]
