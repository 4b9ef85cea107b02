"""The demo world: voices, noises and speakers built from seeds."""
