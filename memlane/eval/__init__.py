"""Evaluation: retrieval metrics on LoCoMo, LongMemEval and a knowledge-update set."""
