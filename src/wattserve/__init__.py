"""wattserve: serve small language models at the lowest energy per answer, with measurements."""

__version__ = "0.1.0"
