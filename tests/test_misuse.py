"""Misuse of skiplib, one row per case: nothing lost, nothing mislabelled, no code run by a file (issue 19).

Every row of :data:`CASES` is an input and the message it must give (a regex searched in the
error, the warning or what was printed on stderr), so that a message that turns vague fails here.
Rows marked "(already good)" pin down cases that were handled well before, so they stay so.

"Not writable" folders are simulated by a regular file standing where the folder should be: the
tests may run as root, for whom a read-only permission bit changes nothing. No row trains for more
than a step or two: the CLI rows replace the training with stand-ins that record what they were asked.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import skiplib
from skiplib import profile as P
from skiplib.cli import main as cli
from skiplib.data import SOURCE_JPEG, SOURCE_SYNTHETIC, DeviceLoader
from skiplib.data.cells import make_cells
from skiplib.models import create_model
from skiplib.models.cifar import CifarResNet
from skiplib.models.fc import FCNet
from skiplib.models.highway import HighwayCifarNet
from skiplib.models.preact import PreActCifarResNet
from skiplib.train import History, checkpoint_dir, fit
from skiplib.train.segmentation import fit_segmentation

AFRESH = r"To start afresh, delete that file or pass another checkpoint path\."
SYNTHETIC = {"source": SOURCE_SYNTHETIC, "train_size": 64, "test_size": 32, "image_size": 8, "seed": 0}


@dataclass
class Case:
    """``action(ctx)`` must give a message matching ``match``: in the exception ``raises`` (where="error"),
    in a UserWarning (where="warning") or on stderr (where="stderr", after ``raises`` if any).
    ``check``, if given, must hold for what ``action`` returned."""

    id: str
    action: Callable[[SimpleNamespace], object]
    match: str
    raises: type[BaseException] | None = ValueError
    where: str = "error"
    check: Callable[[object], bool] | None = None


# ---------------------------------------------------------------------------------------------
# set-up shared by the rows


def loaders(n: int = 64):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g)
    return DeviceLoader(x, y, 32, shuffle=True, seed=0), DeviceLoader(x[:32], y[:32], 32)


def tiny(name: str = "resnet20"):
    torch.manual_seed(0)
    return create_model(name, widths=(4, 8, 8))


def fit_tiny(model, checkpoint, **kw):
    args = {"epochs": 1, "lr": 0.1, "data": SYNTHETIC, **kw}
    return fit(model, loaders()[0], checkpoint=checkpoint, device="cpu", progress=False, **args)


CELLS = make_cells(16, 16, seed=0)


def fit_cells(checkpoint, seed=1):
    torch.manual_seed(0)
    return fit_segmentation(create_model("unet", base=4, depth=2), CELLS, epochs=1, batch_size=8, seed=seed,
                            device="cpu", progress=False, checkpoint=checkpoint)


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> SimpleNamespace:
    """A finished 1-epoch resnet20 run on synthetic data and a finished fit_segmentation run, checkpointed."""
    folder = tmp_path_factory.mktemp("finished")
    fit_tiny(tiny("resnet20"), folder / "resnet20.pt")
    fit_cells(folder / "cells.pt")
    return SimpleNamespace(resnet=folder / "resnet20.pt", cells=folder / "cells.pt")


@pytest.fixture
def ctx(tmp_path, monkeypatch, finished) -> SimpleNamespace:
    monkeypatch.setenv("SKIPLIB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("SKIPLIB_CHECKPOINTS", str(tmp_path / "checkpoints"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # the checkpoint fallback lives under ~
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    (tmp_path / "a-file").write_text("not a folder")
    return SimpleNamespace(tmp=tmp_path, mp=monkeypatch, finished=finished, blocked=tmp_path / "a-file" / "sub")


def copy(src: Path, ctx) -> Path:
    return Path(shutil.copy(src, ctx.tmp / src.name))


# ---------------------------------------------------------------------------------------------
# item 1: checkpoints know what they are for


def legacy_checkpoint(ctx) -> Path:
    state = torch.load(ctx.finished.resnet, weights_only=True)
    del state["fingerprint"]  # what fit wrote before fingerprints
    torch.save(state, ctx.tmp / "old.pt")
    return ctx.tmp / "old.pt"


def corrupt(ctx) -> Path:
    path = ctx.tmp / "corrupt.pt"
    path.write_bytes(ctx.finished.resnet.read_bytes()[:300])  # a copy cut short
    return path


CHECKPOINT_CASES = [
    Case("plain20 at lr 0.5 does not resume resnet20's finished run",
         lambda c: fit_tiny(tiny("plain20"), copy(c.finished.resnet, c), lr=0.5),
         r"was made for another run, so it is not resumed; what differs \(saved → now\):\n"
         r"(.|\n)*model\.modules: '.*PadShortcut.*' → '(?!.*PadShortcut)[^']*'"
         r"(.|\n)*training\.lr: 0\.1 → 0\.5\n" + AFRESH),
    Case("a synthetic-data run does not resume as CIFAR-10",
         lambda c: fit_tiny(tiny(), copy(c.finished.resnet, c), data={**SYNTHETIC, "source": SOURCE_JPEG}),
         re.escape(f"data.source: {SOURCE_SYNTHETIC!r} → {SOURCE_JPEG!r}") + r"\n" + AFRESH),
    Case("another momentum, weight decay and schedule",
         lambda c: fit_tiny(tiny(), copy(c.finished.resnet, c), momentum=0.5, weight_decay=0.0, schedule="cosine"),
         r"training\.momentum: 0\.9 → 0\.5\n  training\.schedule: 'onecycle' → 'cosine'\n"
         r"  training\.weight_decay: 0\.0005 → 0\.0\n" + AFRESH),
    Case("epochs mismatch (already good)",
         lambda c: fit_tiny(tiny(), copy(c.finished.resnet, c), epochs=2),
         r"was made for a 1-epoch run, not 2, so it is not resumed(.|\n)*training\.epochs: 1 → 2\n" + AFRESH),
    Case("fit_segmentation: another seed",
         lambda c: fit_cells(copy(c.finished.cells, c), seed=2),
         r"was made for another run(.|\n)*\n  seed: 1 → 2\n" + AFRESH),
    Case("a checkpoint from before fingerprints is refused, not crashed on",
         lambda c: fit_tiny(tiny(), legacy_checkpoint(c)),
         r"old\.pt was written by an older skiplib, without a fingerprint .*cannot be verified and is not resumed\. "
         + AFRESH),
    Case("a truncated checkpoint",
         lambda c: fit_tiny(tiny(), corrupt(c)),
         r"checkpoint .*corrupt\.pt cannot be read \(\w+\): it is truncated, corrupt, or holds more than tensors"),
    Case("data that is not a dict",
         lambda c: fit_tiny(tiny(), None, data="CIFAR-10"),
         r"data must be a dict describing the training data .*got str"),
]


# ---------------------------------------------------------------------------------------------
# item 2: loading never runs code


def corrupt_hub_weights(ctx):
    from skiplib.models._weights import fetch_weights, pretrained_weights, weights_cache_path

    weights = pretrained_weights("resnet18")
    path = weights_cache_path(weights)
    assert path.is_relative_to(ctx.tmp)  # TORCH_HOME points into tmp: the real hub cache is never touched
    path.parent.mkdir(parents=True)
    path.write_text("<html>502 Bad Gateway</html>")  # what a proxy may serve in place of the file
    return fetch_weights(weights, "resnet18", download=False)


WEIGHT_CASES = [
    Case("a corrupt cached hub weights file", corrupt_hub_weights,
         r"the cached weights file .*/torch/hub/checkpoints/resnet18-[0-9a-f]+\.pth for resnet18 cannot be read "
         r"(.|\n)*delete that file and run again to download it afresh, or place a good copy of "
         r"https://download\.pytorch\.org/models/resnet18-[0-9a-f]+\.pth there", raises=RuntimeError),
]


# ---------------------------------------------------------------------------------------------
# item 3: a finished run is never lost at the end


def no_training(monkeypatch):
    """Replace every command's training with a stand-in that fails the row if it is reached."""
    from skiplib.chapters import ch01_degradation as degradation
    from skiplib.chapters import ch03_highway as highway
    from skiplib.chapters import ch07_comparison as compare
    from skiplib.chapters import ch08_why as landscape

    def trained(*args, **kwargs):
        raise AssertionError("training started before the output folders were checked")

    for module, name in ((compare, "run"), (degradation, "run"), (landscape, "run"), (highway, "flat_cifar10")):
        monkeypatch.setattr(module, name, trained)


def cli_blocked_out_dir(command: str):
    def action(c):
        no_training(c.mp)
        return cli([command, "--profile", "smoke", "--out-dir", str(c.blocked)])
    return action


def cli_blocked_checkpoints(c):
    no_training(c.mp)
    c.mp.setenv("SKIPLIB_CHECKPOINTS", str(c.blocked))
    return cli(["degradation", "--profile", "smoke", "--out-dir", str(c.tmp / "out")])


def block_data_checkpoints(c) -> None:
    """The default checkpoint folder cannot be made: the data folder exists but cannot take it."""
    c.mp.delenv("SKIPLIB_CHECKPOINTS")
    (c.tmp / "data").mkdir()
    (c.tmp / "data" / "checkpoints").write_text("")


def read_only_data_folder(c):
    block_data_checkpoints(c)
    return checkpoint_dir(), c.tmp


def nowhere_to_checkpoint(c):
    block_data_checkpoints(c)
    c.mp.setenv("HOME", str(c.blocked))
    return checkpoint_dir()


def interrupted(c, command: str, name: str) -> dict:
    """Run ``command`` with stand-ins whose second piece of work is a Ctrl-C; return the partial JSON."""
    from skiplib.chapters import ch01_degradation as degradation
    from skiplib.chapters import ch03_highway as highway
    from skiplib.chapters import ch07_comparison as compare
    from skiplib.chapters import ch08_why as landscape

    info = {"source": SOURCE_SYNTHETIC, "train_size": 64, "test_size": 32, "image_size": 8}
    done = History([{"epoch": 1, "train_loss": 2.0, "train_err": 0.8, "test_loss": 2.1, "test_err": 0.8}])
    calls = []

    def second_call_interrupts():
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt

    if command == "degradation":
        c.mp.setattr(degradation, "cifar10_loaders", lambda **kw: (*loaders(), info))
        c.mp.setattr(degradation, "create_model", lambda label: torch.nn.Linear(1, 1))
        c.mp.setattr(degradation, "fit", lambda *a, **kw: second_call_interrupts() or done)
    elif command == "compare":
        record = {"family": "plain", "skip": "none", "depth": 8, "width": 16, "params": 1000, "flops_per_image": 1,
                  "peak_memory_bytes": 1, "train_err": 0.5, "test_err": 0.6, "img_per_s": 100.0}

        def fake_compare(*args, on_record, **kwargs):
            on_record(record)
            raise KeyboardInterrupt
        c.mp.setattr(compare, "compare", fake_compare)
    elif command == "highway":
        c.mp.setattr(highway, "flat_cifar10", lambda *a, **kw: (torch.zeros(4, 3), torch.zeros(4), SOURCE_SYNTHETIC))
        c.mp.setattr(highway, "train_fc", lambda kind, depth, lr, *a, **kw: second_call_interrupts()
                     or highway.FCRun(kind, depth, lr, done, None, 0.1))
    else:
        def fake_pair(cfg, train, test, *, histories, **kw):
            histories["plain56"] = done
            raise KeyboardInterrupt
        c.mp.setattr(landscape, "loaders", lambda *a, **kw: (*loaders(), info))
        c.mp.setattr(landscape, "train_pair", fake_pair)
    with pytest.raises(KeyboardInterrupt):  # re-raised after saving
        cli([command, "--profile", "smoke", "--out-dir", str(c.tmp / "out")])
    assert not (c.tmp / "out" / f"{name}.json").exists()  # a partial run never poses as a complete one
    return json.loads((c.tmp / "out" / f"{name}.partial.json").read_text())


def complete_run_replaces_partial(c):
    from skiplib.results import save_partial, save_result

    save_partial("degradation-smoke", {"histories": {}}, c.tmp)
    save_result("degradation-smoke", {"histories": {"plain20": []}}, c.tmp)
    return sorted(p.name for p in c.tmp.glob("degradation-smoke*"))


OUTPUT_CASES = [
    *[Case(f"{command}: unwritable --out-dir is refused before training", cli_blocked_out_dir(command),
           r"the output folder \(--out-dir\) .*a-file/sub is not writable \(\w+Error: .*\); "
           r"pass --out-dir with a folder you can write")
      for command in ("degradation", "compare", "highway", "landscape")],
    Case("unwritable $SKIPLIB_CHECKPOINTS is refused before training", cli_blocked_checkpoints,
         r"the checkpoint folder \$SKIPLIB_CHECKPOINTS = .*a-file/sub is not writable .*; "
         r"set SKIPLIB_CHECKPOINTS to a folder you can write"),
    Case("read-only data folder: checkpoints go to ~/.cache/skiplib/checkpoints, with a note", read_only_data_folder,
         r"^note: .*data/checkpoints is not writable \(.*\); checkpoints go to .*home/\.cache/skiplib/checkpoints "
         r"\(set SKIPLIB_CHECKPOINTS to choose another folder\)\n$", raises=None, where="stderr",
         check=lambda r: r[0] == r[1] / "home" / ".cache" / "skiplib" / "checkpoints" and r[0].is_dir()),
    Case("neither the data folder nor ~ can take checkpoints", nowhere_to_checkpoint,
         r"no writable folder for checkpoints: .*data/checkpoints is not writable .*, nor is "
         r".*a-file/sub/\.cache/skiplib/checkpoints; set SKIPLIB_CHECKPOINTS to a folder you can write"),
    Case("degradation: Ctrl-C after the first net saves it, marked partial",
         lambda c: interrupted(c, "degradation", "degradation-smoke"),
         r"interrupted: wrote what finished so far to .*out/degradation-smoke\.partial\.json \(marked partial\)",
         raises=None, where="stderr", check=lambda d: d["partial"] is True and list(d["histories"]) == ["plain20"]),
    Case("compare: Ctrl-C after the first run saves its record, marked partial",
         lambda c: interrupted(c, "compare", "compare-smoke"),
         r"interrupted: wrote what finished so far to .*out/compare-smoke\.partial\.json \(marked partial\)",
         raises=None, where="stderr",
         check=lambda d: d["partial"] and len(d["records"]) == 1 and d["summary"][0]["family"] == "plain"),
    Case("highway: Ctrl-C after the first run saves it, marked partial",
         lambda c: interrupted(c, "highway", "highway-depth-smoke"),
         r"interrupted: wrote what finished so far to .*out/highway-depth-smoke\.partial\.json \(marked partial\)",
         raises=None, where="stderr", check=lambda d: d["partial"] and len(d["runs"]) == 1 and len(d["best"]) == 1),
    Case("landscape: Ctrl-C after the first net saves its history, marked partial",
         lambda c: interrupted(c, "landscape", "landscape-smoke"),
         r"interrupted: wrote what finished so far to .*out/landscape-smoke\.partial\.json \(marked partial\)",
         raises=None, where="stderr", check=lambda d: d["partial"] and list(d["histories"]) == ["plain56"]),
    Case("a complete run removes the partial file it supersedes", complete_run_replaces_partial,
         r"interrupted: wrote what finished so far", raises=None, where="stderr",
         check=lambda names: names == ["degradation-smoke.json"]),
]


# ---------------------------------------------------------------------------------------------
# item 4: settings that change silently


def gpu_profile_without_cuda(c):
    c.mp.setattr(torch.cuda, "is_available", lambda: False)
    c.mp.setattr(P, "_warned_gpu_without_cuda", False)
    c.mp.setenv("SKIPLIB_PROFILE", " GPU ")
    first = P.get_profile()
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second call must not warn again
        second = P.get_profile()
    return first, second


SETTING_CASES = [
    Case("--epochs 0 is refused, not read as 'the profile's epochs'",
         lambda c: cli(["degradation", "--profile", "smoke", "--epochs", "0", "--out-dir", str(c.tmp)]),
         r"argument --epochs: must be a positive int \(1, 2, 3, \.\.\.\), got '0'", raises=SystemExit, where="stderr"),
    Case("--epochs -2 is refused",
         lambda c: cli(["compare", "--profile", "smoke", "--epochs", "-2", "--out-dir", str(c.tmp)]),
         r"argument --epochs: must be a positive int \(1, 2, 3, \.\.\.\), got '-2'", raises=SystemExit, where="stderr"),
    Case("SKIPLIB_PROFILE=GPU without CUDA warns once", gpu_profile_without_cuda,
         r"the gpu profile is sized for a CUDA GPU \(minutes per chapter on Colab's T4\), but this machine has none: "
         r"on the cpu its runs take hours\. Set SKIPLIB_PROFILE=cpu \(or --profile cpu\)", raises=None, where="warning",
         check=lambda r: r[0].name == r[1].name == "gpu"),
    Case("bad profile name (already good)", lambda c: P.get_profile("laptop"),
         r"unknown profile 'laptop': SKIPLIB_PROFILE must be one of smoke, cpu, gpu"),
    Case("bad model name (already good)", lambda c: create_model("resnet21"),
         r"unknown model 'resnet21'; registered models: .*resnet20, resnet32"),
    Case("CIFAR ResNet depth 21 (already good)", lambda c: CifarResNet(21), r"CIFAR ResNet depth must be 6n\+2"),
    Case("widths=(0, 32, 64)", lambda c: CifarResNet(20, widths=(0, 32, 64)), r"widths\[0\] must be a positive int, got 0"),
    Case("a negative width", lambda c: PreActCifarResNet(20, widths=(16, -32, 64)),
         r"widths\[1\] must be a positive int, got -32"),
    Case("two widths for three stages", lambda c: HighwayCifarNet(20, widths=(11, 23)),
         r"widths must be 3 channel counts, one per stage \(e\.g\. \(16, 32, 64\)\), got \(11, 23\)"),
    Case("num_classes=0", lambda c: create_model("resnet20", num_classes=0), r"num_classes must be a positive int, got 0"),
    Case("FC net num_classes=0", lambda c: FCNet(num_classes=0), r"num_classes must be a positive int, got 0"),
    Case("highway20(depth=56) does not build a highway56", lambda c: create_model("highway20", depth=56),
         r"highway20 has depth=20 fixed by its name, got depth=56; use create_model\('highway<depth>'\) for depth in "
         r"\(20, 32, 56\), or HighwayCifarNet\(depth=\.\.\.\)"),
    Case("highway20(_d=56): no hidden depth argument", lambda c: create_model("highway20", _d=56),
         r"unexpected keyword argument '_d'", raises=TypeError),
    Case("resnet20(depth=56)", lambda c: create_model("resnet20", depth=56),
         r"resnet20 has depth=20 fixed by its name, got depth=56; use create_model\('resnet<depth>'\)"),
    Case("densenet40(depth=100)", lambda c: create_model("densenet40", depth=100),
         r"densenet40 has depth=40 fixed by its name, got depth=100; use cifar_densenet\("),
    Case("unet_noskip(skips=True) is refused, not ignored", lambda c: create_model("unet_noskip", skips=True),
         r"unet_noskip has skips=False fixed by its name, got skips=True; use create_model\('unet', skips=\.\.\.\)"),
]

CASES = CHECKPOINT_CASES + WEIGHT_CASES + OUTPUT_CASES + SETTING_CASES


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_misuse(case: Case, ctx, capsys):
    capsys.readouterr()
    result = None
    if case.where == "warning":
        with pytest.warns(UserWarning) as record:
            result = case.action(ctx)
        messages = [str(w.message) for w in record]
        assert any(re.search(case.match, m) for m in messages), messages
    elif case.raises is not None:
        with pytest.raises(case.raises) as err:
            case.action(ctx)
        text = str(err.value) if case.where == "error" else capsys.readouterr().err
        assert re.search(case.match, text), text
    else:
        result = case.action(ctx)
        text = capsys.readouterr().err
        assert re.search(case.match, text), text
    if case.check is not None:
        assert case.check(result), result


def test_checkpoint_with_the_same_fingerprint_resumes(ctx, capsys):
    # the other side of the refusals above: the same call gives back the finished run
    h = fit_tiny(tiny("resnet20"), copy(ctx.finished.resnet, ctx))
    assert len(h) == 1
    saved = torch.load(ctx.finished.resnet, weights_only=True)["fingerprint"]
    assert saved["skiplib"] == skiplib.__version__ and saved["data"] == SYNTHETIC and saved["model"]["class"] == "CifarResNet"


def _loads_without_weights_only(path: Path) -> list[str]:
    """``torch.load`` / ``load_state_dict_from_url`` calls in ``path`` without ``weights_only=True``."""
    bad = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) in ("load", "load_state_dict_from_url") \
                and getattr(node.func.value, "id", getattr(node.func.value, "attr", None)) in ("torch", "hub"):
            kw = {k.arg: k.value for k in node.keywords}
            if not (isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True):
                bad.append(f"{path.name}:{node.lineno}")
    return bad


def test_no_loading_in_skiplib_can_run_code():
    root = Path(skiplib.__file__).parent
    files = sorted(root.rglob("*.py"))
    assert not [f for f in files if "weights_only=False" in f.read_text(encoding="utf-8")]
    assert not [b for f in files for b in _loads_without_weights_only(f)]
    # the scan finds the loads it must check (a scan that finds nothing would pass vacuously)
    found = [f.name for f in files if re.search(r"torch\.load\(|load_state_dict_from_url\(", f.read_text(encoding="utf-8"))]
    assert {"checkpoints.py", "_weights.py"} <= set(found)
