"""Evaluation: metrics in the mir_eval shape."""
