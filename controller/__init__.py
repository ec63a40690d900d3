"""regaccess: keeps AWS private-registry access in the state Git declares."""

__version__ = "0.1.0"
