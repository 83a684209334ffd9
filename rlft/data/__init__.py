"""Dataset loading and validation (file:line errors)."""

from rlft.data.collate import collate
from rlft.data.loading import DataError, load_items, report_bad

__all__ = ["DataError", "collate", "load_items", "report_bad"]
