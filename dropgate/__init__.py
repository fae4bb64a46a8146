"""dropgate: partner file drops in, productId-keyed state events out."""

__version__ = "0.1.0"
