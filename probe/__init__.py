"""probe: layer-wise probing of multilingual encoders on an HDF5 feature cache."""

__version__ = "0.1.0"
