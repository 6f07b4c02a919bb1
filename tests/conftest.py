import pytest
import torch

from nvs.inference import reuse_freed_memory


@pytest.fixture(autouse=True, scope="session")
def _allocator_as_the_nvs_command_sets_it():
    """Commands run in this process (tests.helpers.run_nvs) set glibc's allocator as `nvs` does;
    set once before every test, no test depends on which ran first."""
    reuse_freed_memory()


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
