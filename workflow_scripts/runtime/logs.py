"""Logging of the step modules: INFO and up on stderr, which each rule sends to its log file."""

from __future__ import annotations

import logging
import sys

FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format=FORMAT)
