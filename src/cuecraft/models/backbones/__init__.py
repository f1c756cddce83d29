"""Backbones: the symbolic LM (embedded default) and, later, the codec LM."""
