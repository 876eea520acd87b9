"""immich_ml: a hardware-accelerated, drop-in machine-learning service for Immich."""

__version__ = "0.1.0"
