import pytest
import torch

try:  # modules that need transformers call pytest.importorskip("transformers") themselves
    import transformers
except ImportError:
    transformers = None
else:
    transformers.logging.set_verbosity_error()


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
