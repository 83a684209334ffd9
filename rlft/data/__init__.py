"""Dataset loading and validation (file:line errors)."""

from rlft.data.loading import DataError, load_items

__all__ = ["DataError", "load_items"]
