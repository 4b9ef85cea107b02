"""Scoring speech: metrics, ASR, MOS, speaker similarity, enhanced speech and the results tables."""
