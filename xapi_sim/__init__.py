"""xapi-sim: a faithful emulator of XAPI, the XenServer / XCP-ng management toolstack."""

__version__ = "0.1.0"

__all__ = ["__version__"]
