"""Error classes that several modules raise (a leaf module: it imports nothing from ``common``)."""

from __future__ import annotations


class QuantizationError(ValueError):
    """Quantization settings that make no sense (bits out of range, a bad axis)."""
