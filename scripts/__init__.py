"""Maintenance scripts of the repository (not installed, not shipped in any image)."""
