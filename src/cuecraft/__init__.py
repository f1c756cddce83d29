"""cuecraft: score video with music that follows the picture."""

__version__ = "0.1.0"
