"""Stratus: an OpenStack-compatible infrastructure cloud."""

__version__ = "0.1.0"
