"""BrainScale: a BIDS-App for brain imaging at scale."""

__version__ = "0.1.0"
__codeurl__ = "https://github.com/brainscale/brainscale"
