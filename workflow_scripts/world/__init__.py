"""Speakers and their recordings: the demo world built from seeds, real speakers' selections, test sets."""
