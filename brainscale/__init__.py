"""BrainScale foundation floor: errors, exit codes, templates, atlases, BIDS paths, atomic I/O.

Nothing here imports Nipype, :mod:`brainscale.workflows` or :mod:`brainscale.bids_app`;
every other floor may import from here (see the README's Development section).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("brainscale")  # from git tags at build time (setuptools-scm)
except PackageNotFoundError:  # pragma: no cover - a source tree that was never installed
    __version__ = "0.0.0+unknown"
__codeurl__ = "https://github.com/brainscale/brainscale"
