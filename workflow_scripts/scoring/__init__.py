"""Metrics and the models that score speech: ASR, MOS, speaker similarity."""
