"""The package version, in a leaf module that imports nothing, so any module can read it."""
__version__ = "0.2.0"
