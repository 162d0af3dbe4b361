"""Tools for testing code that uses memlane (and memlane itself)."""
