"""BrainScale: a BIDS-App for brain imaging at scale (the application floor)."""

from brainscale import __codeurl__, __version__

__all__ = ["__codeurl__", "__version__"]
