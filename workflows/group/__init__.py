"""group workflows."""
