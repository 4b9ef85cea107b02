import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_dir() -> Path:
    return REPO


@pytest.fixture(scope="session")
def genda25_dir() -> Path:
    """The local mirror of the GenDA 2025 challenge release (../shared/genda25 beside the checkout)."""
    path = Path(os.environ.get("GENDA25_DIR", REPO.parent / "shared" / "genda25"))
    if not path.is_dir():
        pytest.skip(f"challenge release mirror not found at {path} (set GENDA25_DIR)")
    return path


@pytest.fixture
def one_thread():
    """torch on one thread for the test (bit-exact comparisons), restored afterwards."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
