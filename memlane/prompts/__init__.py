"""Prompts, one per module, each versioned and beside the schema of its answer."""
