"""Moving memories in and out: memlane's JSONL export format and conversation importers."""
