"""BrainScale foundation floor: errors, exit codes, templates, atlases, BIDS paths, atomic I/O.

Nothing here imports Nipype, :mod:`workflows` or :mod:`bids_app`; every other floor may
import from here (see the README's Development section).
"""

__version__ = "0.1.0"
__codeurl__ = "https://github.com/brainscale/brainscale"
