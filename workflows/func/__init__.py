"""func workflows."""
