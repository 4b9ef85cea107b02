"""GPU slots, model caches and logging: what every job needs at run time."""
