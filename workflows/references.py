"""References cited by the methods text of more than one workflow."""

ANTS = (
    "Avants BB, Epstein CL, Grossman M, Gee JC. Symmetric diffeomorphic image registration "
    "with cross-correlation. Med Image Anal 12(1):26-41, 2008."
)
N4 = (
    "Tustison NJ et al. N4ITK: improved N3 bias correction. IEEE Trans Med Imaging "
    "29(6):1310-1320, 2010."
)
