"""Checkpoints: where they live (checkpoint_dir, run_checkpoint), fit_segmentation resuming after an
interruption, and fit / fit_segmentation resuming from a checkpoint whose tensors came back on a GPU.

This machine has no GPU, so the GPU case is simulated (see :class:`OnGpu`): every tensor of the
loaded checkpoint reports a CUDA device, as ``torch.load(..., map_location="cuda")`` returns it on
Colab, and ``torch.set_rng_state`` / ``torch.Generator.set_state`` are replaced by stand-ins that
refuse what the real ones refuse (checked against the real ones below) and then call them.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import skiplib
from skiplib import train as T
from skiplib.data import DeviceLoader, make_cells
from skiplib.models.unet import UNet
from skiplib.train import checkpoints as C
from skiplib.train.segmentation import fit_segmentation

# ---------------------------------------------------------------------------------------------
# where checkpoints live


def test_checkpoint_dir_follows_skiplib_checkpoints_then_skiplib_data(tmp_path, monkeypatch):
    monkeypatch.setenv("SKIPLIB_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("SKIPLIB_CHECKPOINTS", raising=False)
    assert T.checkpoint_dir() == tmp_path / "data" / "checkpoints"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SKIPLIB_CHECKPOINTS", "~/drive/ckpt")  # e.g. a mounted Google Drive folder
    assert T.checkpoint_dir() == tmp_path / "home" / "drive" / "ckpt"
    assert T.checkpoint_dir().is_dir()


def test_run_checkpoint_is_keyed_by_the_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("SKIPLIB_CHECKPOINTS", str(tmp_path))
    cfg = {"epochs": 3, "lr": 0.1, "depths": [20, 56], "device": torch.device("cpu")}
    path = T.run_checkpoint("degradation", cfg, "plain20")
    assert path.parent.parent == tmp_path and path.name == "plain20.pt"
    assert path.parent.name.startswith("degradation-")
    # the same settings in another order: the same file; another label: a sibling
    assert T.run_checkpoint("degradation", dict(reversed(list(cfg.items()))), "plain20") == path
    assert T.run_checkpoint("degradation", cfg, "resnet20") == path.parent / "resnet20.pt"
    # any other setting, experiment or version: another folder, so runs never resume each other
    others = {T.run_checkpoint("degradation", {**cfg, "epochs": 4}, "plain20"),
              T.run_checkpoint("degradation", {**cfg, "depths": [20]}, "plain20"),
              T.run_checkpoint("compare", cfg, "plain20")}
    monkeypatch.setattr(C, "__version__", skiplib.__version__ + ".dev1")
    others.add(T.run_checkpoint("degradation", cfg, "plain20"))
    assert len(others) == 4 and path not in others
    assert not path.parent.exists()  # naming a file creates nothing; fit creates the folder


@pytest.mark.parametrize("experiment,label", [("degradation", "../plain20"), ("degradation", "a/b"),
                                              ("degradation", ".hidden"), ("degradation", ""),
                                              ("degradation", "plain 20"), ("../x", "plain20"),
                                              ("degradation", None)])
def test_run_checkpoint_refuses_unsafe_names(tmp_path, monkeypatch, experiment, label):
    monkeypatch.setenv("SKIPLIB_CHECKPOINTS", str(tmp_path))
    with pytest.raises(ValueError, match="not a safe file name"):
        T.run_checkpoint(experiment, {"epochs": 1}, label)


# ---------------------------------------------------------------------------------------------
# fit_segmentation: interrupted, then resumed, equals uninterrupted


class Disconnect(Exception):
    pass


def disconnect_at(model: nn.Module, step: int):
    """Raise :class:`Disconnect` in the ``step``-th training forward pass, mid-epoch, like a
    Colab disconnect. A hook, so the model's state_dict is that of an ordinary model."""
    count = 0

    def hook(module, args):
        nonlocal count
        if module.training:
            count += 1
            if count == step:
                raise Disconnect()

    return model.register_forward_pre_hook(hook)


CELLS = make_cells(16, 16, seed=0)
STEPS = 2  # 16 images, batch_size 8


def seg_model() -> nn.Module:
    # input dropout draws from the global torch RNG: resuming must restore it
    return nn.Sequential(nn.Dropout(0.1), UNet(base=4, depth=2, batch_norm=True))


def seg_fit(model, epochs=3, checkpoint=None):
    return fit_segmentation(model, CELLS, CELLS[:4], epochs=epochs, batch_size=8, weight=(1, 3), seed=1,
                            device="cpu", progress=False, checkpoint=checkpoint)


def strip_seconds(h):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in h.records]


def assert_same_weights(a: nn.Module, b: nn.Module):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


@pytest.fixture(scope="module")
def seg_reference():
    torch.manual_seed(0)
    model = seg_model()
    return model, seg_fit(model)


def test_fit_segmentation_resumes_after_an_interruption_with_the_same_numbers(tmp_path, seg_reference):
    ref_model, ref_h = seg_reference
    ckpt = tmp_path / "seg.pt"
    torch.manual_seed(0)
    model = seg_model()
    disconnect_at(model, 1 * STEPS + 2)  # dies in the middle of epoch 2
    with pytest.raises(Disconnect):
        seg_fit(model, checkpoint=ckpt)
    assert len(torch.load(ckpt, weights_only=True)["history"]["records"]) == 1
    assert not ckpt.with_suffix(".pt.tmp").exists()

    torch.manual_seed(123)  # a fresh kernel: another RNG state and a new model; the checkpoint restores both
    model2 = seg_model()
    h = seg_fit(model2, checkpoint=ckpt)
    assert strip_seconds(h) == strip_seconds(ref_h)
    assert_same_weights(ref_model, model2)

    # a finished run just returns its history; another epoch count is refused
    assert seg_fit(seg_model(), checkpoint=ckpt).records == h.records
    with pytest.raises(ValueError, match="3-epoch run, not 4"):
        seg_fit(seg_model(), epochs=4, checkpoint=ckpt)


# ---------------------------------------------------------------------------------------------
# resuming from a checkpoint whose tensors came back on a GPU (simulated)


def _moves_to_cpu(args, kwargs) -> bool:
    targets = [a for a in (*args[1:], kwargs.get("device")) if isinstance(a, (str, torch.device))]
    return any(torch.device(t).type == "cpu" for t in targets)


class OnGpu(torch.Tensor):
    """A tensor that reports a CUDA device while its data stays in CPU memory: what a checkpoint's
    tensors look like to Python after ``torch.load(..., map_location="cuda")``. ``.cpu()`` and
    ``.to("cpu", ...)`` give an ordinary CPU tensor; every other op keeps it "on the GPU"
    (``.to(torch.uint8)`` included, as on a real GPU)."""

    @property
    def device(self) -> torch.device:
        return torch.device("cuda", 0)

    @property
    def is_cuda(self) -> bool:
        return True

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.Tensor.cpu or (func is torch.Tensor.to and _moves_to_cpu(args, kwargs)):
            return func(args[0].as_subclass(torch.Tensor), *args[1:], **kwargs)
        return super().__torch_function__(func, types, args, kwargs)


def on_gpu(obj):
    """Every tensor in ``obj`` (nested dicts, lists, tuples) as :class:`OnGpu`."""
    if isinstance(obj, torch.Tensor):
        return obj.as_subclass(OnGpu)
    if isinstance(obj, dict):
        out = type(obj)((k, on_gpu(v)) for k, v in obj.items())
        if hasattr(obj, "_metadata"):  # a model's state_dict carries its modules' versions
            out._metadata = obj._metadata
        return out
    if isinstance(obj, (list, tuple)):
        return type(obj)(on_gpu(v) for v in obj)
    return obj


def _check_rng_state(state) -> None:
    # what the real setters check (at::detail::check_rng_state: a strided CPU uint8 tensor), read
    # from the attributes Python sees, so that an OnGpu tensor is refused as a real CUDA one is
    if state.layout != torch.strided or state.device.type != "cpu" or state.dtype != torch.uint8:
        raise TypeError("RNG state must be a torch.ByteTensor")


class StrictGenerator(torch.Generator):
    def set_state(self, new_state):
        _check_rng_state(new_state)
        return super().set_state(new_state)


@pytest.fixture
def checkpoints_load_on_gpu(monkeypatch):
    """torch.load returns every tensor on the "GPU" whatever map_location says (the old fit asked for
    the training device, i.e. CUDA on Colab); the RNG setters refuse non-CPU / non-uint8 states."""
    real_load, real_set_rng_state = torch.load, torch.set_rng_state
    loaded = []

    def load_on_gpu(*args, **kwargs):
        loaded.append(on_gpu(real_load(*args, **kwargs)))
        return loaded[-1]

    def strict_set_rng_state(new_state):
        _check_rng_state(new_state)
        real_set_rng_state(new_state)

    monkeypatch.setattr(torch, "load", load_on_gpu)
    monkeypatch.setattr(torch, "set_rng_state", strict_set_rng_state)
    monkeypatch.setattr(torch, "Generator", StrictGenerator)
    return loaded


def test_the_stand_ins_refuse_what_the_real_rng_setters_refuse():
    good = torch.get_rng_state()
    bad = {"on another device": good.to("meta"), "int64": good.long(), "float32": good.float()}
    for state in bad.values():
        with pytest.raises(TypeError, match="ByteTensor"):
            torch.set_rng_state(state)  # the real one
        with pytest.raises(TypeError, match="ByteTensor"):
            torch.Generator().set_state(state)
        with pytest.raises(TypeError, match="ByteTensor"):
            _check_rng_state(state)
    for state in (good.as_subclass(OnGpu), good.as_subclass(OnGpu).to(torch.uint8)):
        with pytest.raises(TypeError, match="ByteTensor"):
            _check_rng_state(state)
    for state in (good, good.as_subclass(OnGpu).cpu(), good.as_subclass(OnGpu).to("cpu", torch.uint8)):
        _check_rng_state(state)
        assert type(state) is torch.Tensor
        torch.set_rng_state(state)
        StrictGenerator().set_state(state)


def cls_model() -> nn.Module:
    # tiny, with BN buffers; dropout draws from the global torch RNG: resuming must restore it
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Dropout(0.2), nn.Linear(8, 10))


def cls_fit(model, epochs=3, checkpoint=None, fail_at=None):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 3, 8, 8, generator=g), torch.randint(0, 10, (64,), generator=g)
    train = DeviceLoader(x, y, 32, shuffle=True, augment=True, pad=1, seed=0)
    if fail_at is not None:
        disconnect_at(model, fail_at)
    return T.fit(model, train, DeviceLoader(x[:32], y[:32], 32), epochs=epochs, lr=0.05, checkpoint=checkpoint,
                 device="cpu", progress=False)


@pytest.mark.parametrize("which", ["fit", "fit_segmentation"])
def test_resume_from_a_checkpoint_loaded_onto_a_gpu(tmp_path, checkpoints_load_on_gpu, seg_reference, which):
    ckpt = tmp_path / f"{which}.pt"
    if which == "fit":
        torch.manual_seed(0)
        ref_model = cls_model()
        ref_h = cls_fit(ref_model)
        make, train = cls_model, lambda m, **kw: cls_fit(m, **kw)
        fail_at = 1 * 2 + 2  # 2 batches per epoch: dies after the first step of epoch 2
    else:
        ref_model, ref_h = seg_reference
        make, fail_at = seg_model, 1 * STEPS + 2

        def train(m, checkpoint, fail_at=None):
            if fail_at is not None:
                disconnect_at(m, fail_at)
            return seg_fit(m, checkpoint=checkpoint)

    torch.manual_seed(0)
    with pytest.raises(Disconnect):
        train(make(), checkpoint=ckpt, fail_at=fail_at)
    torch.manual_seed(123)
    model = make()
    h = train(model, checkpoint=ckpt)
    assert len(checkpoints_load_on_gpu) == 1  # the resume went through the simulated GPU load
    assert isinstance(checkpoints_load_on_gpu[0]["torch_rng"], OnGpu)
    assert strip_seconds(h) == strip_seconds(ref_h)
    assert_same_weights(ref_model, model)


def test_cuda_rng_state_is_saved_and_restored_as_a_cpu_byte_tensor(monkeypatch):
    # The CUDA branch, with torch.cuda's RNG functions replaced (no GPU here): fit saves the
    # training GPU's state and hands it back to torch.cuda.set_rng_state as a CPU uint8 tensor.
    cuda_state = torch.arange(16, dtype=torch.uint8)
    restored = []

    def set_cuda_rng_state(new_state, device="cuda"):
        _check_rng_state(new_state)
        restored.append((new_state, device))

    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device="cuda": cuda_state.clone())
    monkeypatch.setattr(torch.cuda, "set_rng_state", set_cuda_rng_state)
    gpu = torch.device("cuda")
    saved = C.rng_state(gpu)
    assert torch.equal(saved["cuda_rng"], cuda_state) and saved["torch_rng"].dtype == torch.uint8
    C.restore_rng(on_gpu(saved), gpu)
    assert len(restored) == 1 and torch.equal(restored[0][0], cuda_state) and restored[0][1] == gpu
    # made on the CPU: nothing to restore on the GPU; made on the GPU, resumed on the CPU: skipped
    C.restore_rng(C.rng_state(torch.device("cpu")), gpu)
    C.restore_rng(saved, torch.device("cpu"))
    assert len(restored) == 1
    assert C.rng_state(torch.device("cpu"))["cuda_rng"] is None


# ---------------------------------------------------------------------------------------------
# the experiments' long runs checkpoint per run when asked


def _cifar_like(seed: int):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(64, 3, 8, 8, generator=g), torch.randint(0, 10, (64,), generator=g)
    return DeviceLoader(x, y, 32, shuffle=True, augment=True, pad=1, seed=seed), DeviceLoader(x[:32], y[:32], 32)


def test_compare_checkpoints_each_run_and_a_second_call_trains_nothing(tmp_path, monkeypatch):
    from skiplib.analysis.families import compare

    monkeypatch.setenv("SKIPLIB_CHECKPOINTS", str(tmp_path))
    kwargs = dict(loaders=_cifar_like, epochs=1, seeds=[0, 1], device="cpu", fit_kwargs={"lr": 0.05})
    with pytest.raises(ValueError, match="data_config"):
        compare(["residual"], [8], 20_000, checkpoints=True, **kwargs)
    data = {"images": 64, "image_size": 8}
    first = compare(["residual"], [8], 20_000, checkpoints=True, data_config=data, **kwargs)
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.pt"))
    width = first[0]["width"]
    assert len(files) == 2 and files[0].startswith("compare-")
    assert [f.split("/")[1] for f in files] == [f"residual-8-w{width}-s0.pt", f"residual-8-w{width}-s1.pt"]
    # timings come from the checkpointed epochs, so a finished run gives back its record unchanged
    assert compare(["residual"], [8], 20_000, checkpoints=True, data_config=data, **kwargs) == first
    # other data: another folder
    compare(["residual"], [8], 20_000, checkpoints=True, data_config={**data, "images": 32}, seeds=[0],
            **{k: v for k, v in kwargs.items() if k != "seeds"})
    assert len({p.parent for p in tmp_path.rglob("*.pt")}) == 2


def test_landscape_train_pair_checkpoints_keyed_by_training_settings_and_depth(tmp_path, monkeypatch):
    from skiplib.chapters.ch08_why import train_pair

    monkeypatch.setenv("SKIPLIB_CHECKPOINTS", str(tmp_path))
    cfg = {"depth": 20, "seed": 0, "epochs": 1, "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4,
           "schedule": "onecycle", "batch_size": 32, "image_size": 8, "train_subset": 64, "test_subset": 32,
           "profile": "smoke", "grid_points": 5}
    train, test = _cifar_like(0)
    _, h1 = train_pair(cfg, train, test, device="cpu", checkpoints=True)
    folders = {p.parent for p in tmp_path.rglob("*.pt")}
    assert len(folders) == 1 and sorted(p.name for p in next(iter(folders)).iterdir()) == ["plain20.pt", "resnet20.pt"]
    # the surface grid does not change the trained nets: the same checkpoints, the same histories
    _, h2 = train_pair({**cfg, "grid_points": 7}, *_cifar_like(0), device="cpu", checkpoints=True)
    assert {k: h.records for k, h in h2.items()} == {k: h.records for k, h in h1.items()}
    assert {p.parent for p in tmp_path.rglob("*.pt")} == folders
    # another depth (the lesion pair) or another recipe: its own folder
    train_pair(cfg, *_cifar_like(0), device="cpu", depth=32, checkpoints=True)
    train_pair({**cfg, "lr": 0.02}, *_cifar_like(0), device="cpu", checkpoints=True)
    assert len({p.parent for p in tmp_path.rglob("*.pt")}) == 3


def test_the_experiments_record_their_data_in_every_checkpoint(tmp_path, monkeypatch):
    # what lets a synthetic-data run be refused under a CIFAR-10 label: each caller in
    # skiplib.experiments hands fit the loaders' info (and seed), and fit stores it
    from skiplib.analysis.families import compare
    from skiplib.chapters import ch01_degradation as degradation
    from skiplib.chapters.ch08_why import train_pair

    monkeypatch.setenv("SKIPLIB_CHECKPOINTS", str(tmp_path))
    info = {"source": "synthetic CIFAR-shaped stand-in (not CIFAR-10)", "train_size": 64, "test_size": 32,
            "image_size": 8}
    compare(["residual"], [8], 20_000, loaders=lambda seed: (*_cifar_like(seed), info), epochs=1, seeds=[3],
            device="cpu", checkpoints=True, data_config={"images": 64})
    cfg = {"depth": 20, "seed": 5, "epochs": 1, "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4,
           "schedule": "onecycle", "batch_size": 32, "image_size": 8, "train_subset": 64, "test_subset": 32,
           "profile": "smoke"}
    train_pair(cfg, *_cifar_like(0), device="cpu", checkpoints=True, data=info)
    monkeypatch.setattr(degradation, "cifar10_loaders", lambda **kw: (*_cifar_like(0), info))
    degradation.run({**cfg, "depths": [20]}, device="cpu", families=("plain",), checkpoints=True, progress=False)
    seeds = {}
    for path in tmp_path.rglob("*.pt"):
        data = torch.load(path, weights_only=True)["fingerprint"]["data"]
        seeds[path.parent.name.split("-")[0] + "/" + path.name.split("-")[0]] = data.pop("seed")
        assert data == info, path
    assert seeds == {"compare/residual": 3, "landscape/plain20.pt": 5, "landscape/resnet20.pt": 5,
                     "degradation/plain20.pt": 5}
