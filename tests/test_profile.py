import pytest
import torch

from skiplib.profile import PROFILES, get_profile, seed_everything


def test_profile_from_environment(monkeypatch):
    monkeypatch.setenv("SKIPLIB_PROFILE", "cpu")
    assert get_profile().name == "cpu"
    monkeypatch.setenv("SKIPLIB_PROFILE", "GPU ")
    assert get_profile().name == "gpu"


def test_default_profile_depends_on_cuda(monkeypatch):
    monkeypatch.delenv("SKIPLIB_PROFILE", raising=False)
    assert get_profile().name == ("gpu" if torch.cuda.is_available() else "cpu")


def test_unknown_profile_names_allowed_values(monkeypatch):
    monkeypatch.setenv("SKIPLIB_PROFILE", "laptop")
    with pytest.raises(ValueError) as e:
        get_profile()
    assert all(p in str(e.value) for p in PROFILES)


def test_choose_and_synthetic_only_in_smoke():
    assert get_profile("smoke").choose(smoke=1, cpu=2, gpu=3) == 1
    assert get_profile("gpu", device="cpu").choose(smoke=1, cpu=2, gpu=3) == 3
    assert get_profile("smoke").allow_synthetic
    assert not get_profile("cpu").allow_synthetic


def test_seed_everything_repeats_random_numbers():
    seed_everything(3)
    a = torch.randn(5)
    seed_everything(3)
    assert torch.equal(a, torch.randn(5))
    with pytest.raises(ValueError):
        seed_everything(-1)
