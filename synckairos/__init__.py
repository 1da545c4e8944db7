"""SyncKairos: a real-time session and timer synchronization server.

The server owns time; clients only display it.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
