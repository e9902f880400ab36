"""dwi workflows."""
