"""The ``gpu`` profile, validated on the CPU: it has never run on a GPU here, so every chapter's gpu
sizes are checked for consistency (subsets, depths, batches, epochs, image sizes), the gpu profile
must do at least the cpu profile's work, and the largest training step of each chapter must fit a
Colab T4's memory (activation memory measured on the CPU, extrapolated to the gpu batch)."""

from __future__ import annotations

import math
import re

import pytest
import torch

from skiplib.analysis import families as C
from skiplib.analysis.memory import TensorMemory
from skiplib.chapters import ch01_degradation as ch1
from skiplib.chapters import ch07_comparison as ch7
from skiplib.chapters.ch02_identity import config as ch2_config
from skiplib.chapters.ch03_highway import config as ch3_config
from skiplib.chapters.ch04_resnets import config as ch4_config
from skiplib.chapters.ch05_densenets import config as ch5_config
from skiplib.chapters.ch06_unet import config as ch6_config
from skiplib.chapters.ch08_why import config as ch8_config
from skiplib.chapters.ch09_transformer import config as ch9_config
from skiplib.models import list_models
from skiplib.models.densenet import cifar_densenet
from skiplib.models.highway import HighwayCifarNet
from skiplib.profile import get_profile
from skiplib.tools import workload as W
from skiplib.tools.gpucheck import CUDA_CONTEXT_BYTES, T4_TOTAL_BYTES

CPU, GPU = get_profile("cpu", device="cpu"), get_profile("gpu", device="cpu")
CONFIGS = {1: ch1.config, 2: ch2_config, 3: ch3_config, 4: ch4_config, 5: ch5_config, 6: ch6_config,
           7: ch7.config, 8: ch8_config, 9: ch9_config}
TRAIN, TEST = W.CIFAR_TRAIN, W.CIFAR_TEST


def _pos(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def _size(subset, total: int) -> int:
    """Images a subset setting gives: None means all; otherwise 1..total."""
    assert subset is None or (_pos(subset) and subset <= total), f"subset {subset!r} not None or in 1..{total:,}"
    return total if subset is None else subset


def _resnet_depth(d) -> bool:
    return _pos(d) and d >= 8 and (d - 2) % 6 == 0


@pytest.mark.parametrize("chapter", sorted(CONFIGS))
def test_gpu_epochs_and_steps_are_at_least_the_cpu_profiles(chapter):
    cpu, gpu = CONFIGS[chapter](CPU), CONFIGS[chapter](GPU)
    assert set(cpu) == set(gpu)
    for key in gpu:
        if re.search(r"(epochs|steps|points|samples|images)$", key) and _pos(cpu[key]):
            assert _pos(gpu[key]) and gpu[key] >= cpu[key], (key, cpu[key], gpu[key])


def test_chapter1_gpu_sizes():
    c = ch1.config(GPU)
    n = _size(c["train_subset"], TRAIN)
    _size(c["test_subset"], TEST)
    assert c["image_size"] == 32 and c["batch_size"] <= n
    assert all(_resnet_depth(d) and f"plain{d}" in list_models() for d in c["depths"]), c["depths"]


def test_chapter2_gpu_sizes():
    c = ch2_config(GPU)
    n = _size(c["train_subset"], TRAIN)
    _size(c["test_subset"], TEST)
    assert c["image_size"] == 32 and c["batch_size"] <= n
    assert _resnet_depth(c["shallow_depth"]) and _resnet_depth(c["deep_depth"]) and c["shallow_depth"] < c["deep_depth"]
    assert all(_pos(k) and k % 2 == 0 for k in c["identity_layers"])  # stacks of BasicBlocks: two convs each
    n_fit, n_test = c["identity_images"]
    assert _pos(n_fit) and _pos(n_test) and n_fit + n_test <= n
    assert c["identity_crop"] <= c["image_size"]  # a window of the first stage's full-resolution maps
    assert c["noise_images"] <= n and list(c["sigmas"]) == sorted(c["sigmas"]) and min(c["sigmas"]) > 0
    assert c["zero_init_steps"] * c["batch_size"] <= 5 * n  # a few epochs at most: it shows the first steps


def test_chapter3_gpu_sizes():
    c = ch3_config(GPU)
    n_fc = _size(c["fc_train_subset"], TRAIN)
    n = _size(c["conv_train_subset"], TRAIN)
    _size(c["conv_test_subset"], TEST)
    assert all(_pos(d) and d >= 2 and d in c["fc_gate_bias"] for d in c["depths"]), (c["depths"], c["fc_gate_bias"])
    assert _pos(c["bias_depth"]) and c["gate_batch"] <= n_fc and c["batch_size"] <= min(n, n_fc)
    assert all(lr > 0 for lr in c["fc_lrs"]) and c["conv_image_size"] == 32
    with torch.device("meta"):
        HighwayCifarNet(c["conv_depth"])  # raises on a depth the family does not take
    assert f"resnet{c['conv_depth']}" in list_models()


def test_chapter4_gpu_sizes():
    c = ch4_config(GPU)
    n = _size(c["train_subset"], TRAIN)
    _size(c["test_subset"], TEST)
    assert c["image_size"] == 32 and c["grad_image_size"] == 32 and c["summary_size"] == 224
    assert c["batch_size"] <= n and c["grad_batch"] <= n
    for d in (c["train_depth"], c["grad_depth"]):
        assert {f"plain{d}", f"resnet{d}"} <= set(list_models()), d


def test_chapter5_gpu_sizes():
    c = ch5_config(GPU)
    n = _size(c["train_subset"], TRAIN)
    _size(c["test_subset"], TEST)
    assert c["image_size"] == 32 and c["batch_size"] <= n and c["tv_image_size"] == 224
    with torch.device("meta"):
        cifar_densenet(c["dense_depth"], c["growth_rate"], bottleneck=True, compression=0.5)  # 6n+4 or ValueError
    assert c["resnet"] in list_models()
    assert len(c["mem_depths"]) >= 2 and c["mem_depths"] == sorted(set(c["mem_depths"]))  # growth exponent: last two
    assert all(_pos(v) for v in (*c["mem_depths"], c["mem_batch"], c["mem_image_size"], c["time_steps"]))


@pytest.mark.parametrize("chapter", [6, 7])
def test_unet_gpu_sizes(chapter):
    c = ch6_config(GPU)  # Chapter 7's segmentation runs use Chapter 6's sizes
    assert all(_pos(c[k]) for k in ("train_n", "test_n", "size", "base", "depth", "batch_size", "epochs"))
    assert c["size"] % 2 ** c["depth"] == 0, "every max-pool must halve an even size: no padding in the decoder"
    assert c["size"] // 2 ** c["depth"] >= 4 and c["batch_size"] <= c["train_n"]


def test_chapter7_gpu_sizes():
    c = ch7.config(GPU)
    n = _size(c["train_subset"], TRAIN)
    _size(c["test_subset"], TEST)
    assert c["image_size"] == 32 and c["batch_size"] <= n and len(c["seeds"]) >= 2  # a spread needs two seeds
    jobs = W.compare_jobs(c)  # matched_width raises if a family cannot meet the budget at a depth
    assert len(jobs) == len(c["families"]) * len(c["depths"])
    for name in c["families"]:
        depths = [C.get_family(name).nearest_depth(t) for t in c["depths"]]
        assert depths == sorted(set(depths)), (name, depths)  # distinct depths, still a sweep


def test_chapter8_gpu_sizes():
    c = ch8_config(GPU)
    n = _size(c["train_subset"], TRAIN)
    _size(c["test_subset"], TEST)
    assert c["image_size"] == 32 and c["batch_size"] <= n
    for d in (c["depth"], c["lesion_depth"], c["grad_depth"]):
        assert {f"plain{d}", f"resnet{d}", f"preact{d}"} <= set(list_models()), d
    assert c["grid_points"] % 2 == 1 and c["slice_points"] % 2 == 1  # the trained weights are a grid point
    assert c["surface_images"] <= n and (c["surface_batch"] is None or c["surface_batch"] <= c["surface_images"])
    assert c["path_images"] <= n and c["grad_batch"] <= n and c["span"] > 0


# ---------------------------------------------------------------------------------------------
# Work per chapter (skiplib.tools.workload)

@pytest.fixture(scope="module")
def jobs() -> dict:
    return {(p.name, ch): fn(p) for p in (CPU, GPU) for ch, fn in W.CHAPTERS.items()}


def test_every_chapter_notebook_has_a_workload_entry(repo_root, jobs):
    chapters = {int(m.group(1)) for p in (repo_root / "book").glob("*.ipynb") if (m := re.match(r"(\d+)_", p.name))}
    assert chapters and chapters <= set(W.CHAPTERS), sorted(chapters - set(W.CHAPTERS))
    for ch in W.CHAPTERS:
        assert jobs["gpu", ch] and all(W.job_flops(j) > 0 for j in jobs["gpu", ch]), ch


@pytest.mark.parametrize("chapter", sorted(W.CHAPTERS))
def test_gpu_profile_does_at_least_the_cpu_profiles_work(jobs, chapter):
    cpu, gpu = (sum(W.job_flops(j) for j in jobs[p, chapter]) for p in ("cpu", "gpu"))
    print(f"chapter {chapter}: {cpu / 1e12:.0f} TFLOP (cpu) -> {gpu / 1e12:.0f} TFLOP (gpu), x{gpu / cpu:.0f}")
    assert gpu >= cpu


def _step_bytes(job: W.Job, batch: int, train: bool) -> int:
    """Peak bytes of tensors created by one step of ``job``'s model at ``batch`` on the CPU (fp32)."""
    torch.manual_seed(0)
    model = job.build()
    x = torch.randn(batch, *job.input_shape)
    if not train:
        model.eval()
        with torch.no_grad(), TensorMemory() as mem:
            model(x)
        return mem.peak
    with torch.device("meta"):
        spatial = job.build()(torch.zeros(1, *job.input_shape)).shape[2:]
    y = torch.zeros(batch, *spatial, dtype=torch.long)  # per pixel for a U-Net (or a block stack's maps)
    return C.peak_training_memory(model, x, y)


_PROXY: dict = {}


def _proxy(job: W.Job) -> int:
    """Elements of every layer's output for one image (a no-grad forward on the CPU), per architecture."""
    if (job.key, job.input_shape) not in _PROXY:
        total = 0

        def add(module, inputs, out):
            nonlocal total
            total += out.numel() if isinstance(out, torch.Tensor) else 0

        model = job.build().eval()
        hooks = [m.register_forward_hook(add) for m in model.modules() if not list(m.children())]
        with torch.no_grad():
            model(torch.zeros(1, *job.input_shape))
        for h in hooks:
            h.remove()
        _PROXY[job.key, job.input_shape] = total
    return _PROXY[job.key, job.input_shape]


def test_largest_steps_fit_a_t4(jobs):
    """Per chapter, the training step (and the scoring batch) with the most activations, measured at
    batches of 2 and 4 on the CPU and extrapolated linearly to the gpu batch. fp32 here; the T4 runs
    AMP (fp16 activations), so this is an upper bound. Added: weights and optimiser state (4 copies
    of the parameters), the data set the loader keeps on the GPU, 20% for fragmentation, 1 GiB of
    cuDNN workspace and the CUDA context."""
    limit = T4_TOTAL_BYTES
    checked, rows = set(), []
    for ch in W.CHAPTERS:
        train = [j for j in jobs["gpu", ch] if j.images]
        score = [j for j in jobs["gpu", ch] if j.eval_images]
        picks = [(max(train, key=lambda j: _proxy(j) * j.batch_size), True)]
        picks += [(max(score, key=lambda j: _proxy(j) * (j.eval_batch or j.batch_size)), False)] if score else []
        for job, train_step in picks:
            batch = job.batch_size if train_step else (job.eval_batch or job.batch_size)
            if (job.key, batch, train_step) in checked:
                rows.append((ch, job.label, batch, "train" if train_step else "score", None, None))
                continue
            checked.add((job.key, batch, train_step))
            two, four = (_step_bytes(job, b, train_step) for b in (2, 4))
            steps = two + max(0, four - two) / 2 * (batch - 2)  # a fixed part (gradients) + a part per image
            params = W.model_stats(job).parameters * 4
            if job.input_shape[0] == 3:  # CIFAR-10 as float32, train and test
                data = (W.CIFAR_TRAIN + W.CIFAR_TEST) * math.prod(job.input_shape) * 4
            elif isinstance(job.build(), W.TokenModel):  # Chapter 9 generates its sequences batch by batch
                data = 0
            else:  # the cells: float32 images and int64 masks
                seg = ch6_config(GPU)
                data = (seg["train_n"] + seg["test_n"]) * math.prod(job.input_shape) * (4 + 8)
            need = 1.2 * (steps + 4 * params) + data + 2**30 + CUDA_CONTEXT_BYTES
            rows.append((ch, job.label, batch, "train" if train_step else "score", steps / 2**30, need / 2**30))
            assert need <= limit, (f"chapter {ch}: {job.label} at batch {batch} needs ~{need / 2**30:.1f} GiB, "
                                   f"more than a T4's {limit / 2**30:.1f} GiB")
    print("\nchapter  job                 batch  step   activations (GiB)  estimated need (GiB)")
    for ch, label, batch, kind, act, need in rows:
        print(f"{ch:>7}  {label:<18} {batch:>6}  {kind:<5} " + ("(as above)" if act is None else f"{act:17.2f}  {need:20.2f}"))


def test_the_introductions_run_time_table_is_up_to_date():
    # book/_run_times.md is what the code computes now (no typed numbers in the book's prose)
    from skiplib.results import load_result
    from skiplib.tools.bench import RUN_TIMES_FILE, run_times_table

    assert RUN_TIMES_FILE.read_text(encoding="utf-8") == run_times_table(load_result("gpu-check")), (
        "book/_run_times.md is stale: run `python -m skiplib.tools bench --write-run-times`")
