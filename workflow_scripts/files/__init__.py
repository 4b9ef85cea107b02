"""Files on disk: audio I/O, atomic writes, and the one owner of every folder format."""
