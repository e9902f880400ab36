"""anat workflows."""
