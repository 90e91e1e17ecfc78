"""Placeholder: the adapter lands in its own issue."""
