"""The identity-mapping construction of He et al. (2016), taught in Chapter 2.

A deeper plain net can always compute what a shallower one computes: keep the shallow
net's layers and insert layers that pass their input through unchanged. For the CIFAR
plain family an inserted block is conv (Dirac kernel) - BN (set to pass x through in eval
mode) - ReLU - conv (Dirac) - BN - ReLU; every block input is the output of a ReLU, so it
is non-negative and the ReLUs change nothing. For a residual net the inserted block only
needs a zero last-BN scale: relu(0 + x) = x. For an MLP the inserted pair is an identity
``Linear`` followed by a ReLU, placed after a ReLU.

The rest of the module holds the chapter's experiments: exact
(TF32/AMP-free) evaluation, fitting stacks of blocks to the identity map, per-step loss
curves, noise on the inserted layers and shrinking parameters towards zero.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from skiplib.analysis.probes import calibrate_bn
from skiplib.blocks import BasicBlock, check_shortcut, he_init_
from skiplib.checks import check_cifar_depth
from skiplib.models.cifar import CifarResNet
from skiplib.train import evaluate

_MLP_LAYERS = (nn.Linear, nn.ReLU, nn.Flatten, nn.BatchNorm1d)


# ------------------------------------------------------------------ identity layers
@torch.no_grad()
def dirac_conv_(conv: nn.Conv2d) -> nn.Conv2d:
    """Make ``conv`` the identity map: weight[c, c, k//2, k//2] = 1, every other weight (and bias) 0."""
    k = conv.kernel_size
    problems = []
    if conv.in_channels != conv.out_channels:
        problems.append(f"in_channels {conv.in_channels} != out_channels {conv.out_channels}")
    if conv.groups != 1:
        problems.append(f"groups={conv.groups} (need 1)")
    if conv.stride != (1, 1):
        problems.append(f"stride={conv.stride} (need 1: a strided conv drops pixels)")
    if conv.dilation != (1, 1):
        problems.append(f"dilation={conv.dilation} (need 1)")
    if k[0] % 2 == 0 or k[1] % 2 == 0 or conv.padding != (k[0] // 2, k[1] // 2):
        problems.append(f"kernel {k} with padding {conv.padding} "
                        "(need an odd kernel and padding k//2, so that the output keeps the input's size)")
    if problems:
        raise ValueError("this convolution cannot be an identity map: " + "; ".join(problems))
    nn.init.dirac_(conv.weight)
    if conv.bias is not None:
        conv.bias.zero_()
    return conv


@torch.no_grad()
def identity_bn_(bn: nn.modules.batchnorm._BatchNorm) -> nn.modules.batchnorm._BatchNorm:
    """Make ``bn`` pass its input through in eval mode: mean 0, var 1, scale sqrt(1 + eps), shift 0.

    In eval mode BN computes (x - mean) / sqrt(var + eps) * scale + shift, which is then
    x / sqrt(1 + eps) * sqrt(1 + eps); in float32 this is x exactly (the tests check it).
    """
    if not bn.track_running_stats or bn.running_var is None:
        raise ValueError("BN without running statistics normalises by the batch even in eval mode, "
                         "so it cannot be an identity")
    bn.running_mean.zero_()
    bn.running_var.fill_(1.0)
    if bn.affine:
        bn.weight.copy_(torch.sqrt(bn.running_var + bn.eps))
        bn.bias.copy_(bn.running_mean)
    else:
        bn.running_var.fill_(1.0 - bn.eps)  # no scale to undo the division: make var + eps = 1 instead
    return bn


@torch.no_grad()
def identity_linear_(linear: nn.Linear) -> nn.Linear:
    """Make a square ``Linear`` the identity map (weight I, bias 0)."""
    if linear.in_features != linear.out_features:
        raise ValueError(f"a Linear layer {linear.in_features} -> {linear.out_features} cannot be an identity map: "
                         "it must be square")
    nn.init.eye_(linear.weight)
    if linear.bias is not None:
        linear.bias.zero_()
    return linear


def identity_block(channels: int, shortcut: str = "none") -> BasicBlock:
    """A stride-1 block (in eval mode) that returns its input x for every x >= 0.

    Plain (``"none"``): Dirac convs and pass-through BNs. Residual: the branch is switched off
    by a zero last-BN scale (Goyal et al.'s zero-init), leaving relu(x) = x; with option C
    (``"projection_all"``) the shortcut's 1x1 conv and BN are set to pass x through as well.
    """
    block = BasicBlock(channels, channels, 1, check_shortcut(shortcut))
    if shortcut == "none":
        for layer in (block.conv1, block.conv2):
            dirac_conv_(layer)
        for layer in (block.bn1, block.bn2):
            identity_bn_(layer)
    else:
        with torch.no_grad():
            block.bn2.bias.zero_()
        block.zero_init_last()
        if block.downsample is not None:
            # option C projects on every block, even where shapes match: a fresh 1x1 conv + BN
            # would change the function, so the inserted block's projection is made an identity too
            conv, bn = block.downsample
            dirac_conv_(conv)
            identity_bn_(bn)
    return block.eval()


# ------------------------------------------------------------------ deepening
def _check_eval(model: nn.Module) -> None:
    names = [n for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]
    if names:
        raise ValueError(
            f"BatchNorm layers are in training mode ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''}): "
            "in training mode BN normalises with each batch's statistics, so no BN can pass its input through "
            "and the network has no fixed function to copy. Call model.eval() first.")


def _stages(model: CifarResNet) -> list[nn.Sequential]:
    return [model.layer1, model.layer2, model.layer3]


def inserted_block_names(shallow_depth: int, depth: int) -> list[str]:
    """Names (``"layer2.3"``) of the blocks that :func:`deepen_cifar` inserts: the last ones of each stage."""
    n = check_cifar_depth(shallow_depth, "the shallow CIFAR net's")
    m = check_cifar_depth(depth, "the deep CIFAR net's")
    if depth < shallow_depth:
        raise ValueError(f"the deep net (depth {depth}) must be at least as deep as the shallow one ({shallow_depth})")
    return [f"layer{s}.{i}" for s in (1, 2, 3) for i in range(n, m)]


def deepen_cifar(shallow: CifarResNet, depth: int) -> CifarResNet:
    """A ``CifarResNet(depth)`` (same shortcut and widths) computing exactly what ``shallow`` computes in eval mode.

    Each stage keeps the shallow net's blocks (the first one downsamples) and appends identity
    blocks, so the copy is plain-``depth`` for a plain ``shallow``. Returned in eval mode.
    """
    if not isinstance(shallow, CifarResNet):
        raise ValueError(f"deepen_cifar needs a CifarResNet, got {type(shallow).__name__}")
    _check_eval(shallow)
    inserted_block_names(shallow.depth, depth)  # validates both depths
    widths = tuple(stage[0].conv2.out_channels for stage in _stages(shallow))
    deep = CifarResNet(depth, num_classes=shallow.fc.out_features, shortcut=shallow.shortcut,
                       widths=widths, in_channels=shallow.conv1.in_channels)
    deep.to(next(shallow.parameters()).device)
    for name in ("conv1", "bn1", "fc"):
        getattr(deep, name).load_state_dict(getattr(shallow, name).state_dict())
    n = len(shallow.layer1)
    for s, (src, dst) in enumerate(zip(_stages(shallow), _stages(deep)), start=1):
        for i, block in enumerate(dst):
            if i < n:
                block.load_state_dict(src[i].state_dict())
            else:
                dst[i] = identity_block(widths[s - 1], shallow.shortcut).to(block.conv1.weight.device)
    return deep.eval()


def deepen_mlp(mlp: nn.Sequential, depth: int) -> nn.Sequential:
    """An MLP with ``depth`` Linear layers computing what ``mlp`` computes (in eval mode).

    The extra (identity Linear, ReLU) pairs go right after the last ReLU, where activations are
    non-negative. ``mlp`` may hold Linear, ReLU, Flatten and BatchNorm1d layers.
    """
    if not isinstance(mlp, nn.Sequential):
        raise ValueError(f"deepen_mlp needs an nn.Sequential, got {type(mlp).__name__}")
    bad = [type(m).__name__ for m in mlp if not isinstance(m, _MLP_LAYERS)]
    if bad:
        raise ValueError(f"deepen_mlp handles Linear, ReLU, Flatten and BatchNorm1d layers only, "
                         f"found {', '.join(bad)}")
    _check_eval(mlp)
    n = sum(isinstance(m, nn.Linear) for m in mlp)
    if not isinstance(depth, int) or depth < n:
        raise ValueError(f"depth (number of Linear layers) must be an int >= the MLP's {n}, got {depth!r}")
    relus = [i for i, m in enumerate(mlp) if isinstance(m, nn.ReLU)]
    linears_before = [i for i in relus if any(isinstance(m, nn.Linear) for m in list(mlp)[:i])]
    if depth > n and not linears_before:
        raise ValueError("the MLP has no ReLU after a Linear layer: nowhere are the activations guaranteed "
                         "non-negative, so an inserted ReLU would change the function")
    layers = [copy.deepcopy(m) for m in mlp]
    if depth > n:
        at = linears_before[-1]
        width = [m for m in list(mlp)[:at] if isinstance(m, nn.Linear)][-1].out_features
        ref = next(mlp.parameters())
        extra = []
        for _ in range(depth - n):
            extra += [identity_linear_(nn.Linear(width, width).to(ref.device, ref.dtype)), nn.ReLU()]
        layers[at + 1:at + 1] = extra
    return nn.Sequential(*layers).eval()


def deepen(model: nn.Module, depth: int) -> nn.Module:
    """Deepen a CIFAR net (``depth`` = 6n+2) or an MLP (``depth`` = number of Linear layers); see above."""
    if isinstance(model, CifarResNet):
        return deepen_cifar(model, depth)
    if isinstance(model, nn.Sequential):
        return deepen_mlp(model, depth)
    raise ValueError(f"deepen handles CifarResNet and nn.Sequential MLPs, got {type(model).__name__}")


@torch.no_grad()
def perturb(model: nn.Module, names: list[str], sigma: float, seed: int = 0) -> nn.Module:
    """A copy of ``model`` with N(0, sigma^2) noise added to every conv weight of the named blocks."""
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    out = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    modules = dict(out.named_modules())
    for name in names:
        if name not in modules:
            raise ValueError(f"no module named {name!r} in the model")
        for m in modules[name].modules():
            if isinstance(m, nn.Conv2d):
                m.weight.add_(sigma * torch.randn(m.weight.shape, generator=g).to(m.weight.device))
    return out


@torch.no_grad()
def shrink(model: nn.Module, factor: float) -> nn.Module:
    """A copy of ``model`` with every parameter multiplied by ``factor``: where weight decay alone
    (or a near-zero initialisation) leaves the weights, ``factor = (1 - lr * wd) ** steps``."""
    out = copy.deepcopy(model)
    for p in out.parameters():
        p.mul_(factor)
    return out


# ------------------------------------------------------------------ exact evaluation
@contextlib.contextmanager
def exact_math() -> Iterator[None]:
    """Turn off TF32 on CUDA for the block (it rounds conv inputs to 10-bit mantissas, which would
    hide an exact identity behind ~1e-3 errors); a no-op on the CPU."""
    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def dataset_loss(model: nn.Module, loader, device: str | torch.device | None = None) -> dict:
    """Mean cross-entropy and error of ``model`` in eval mode over ``loader``, in float32 without
    AMP or TF32 (unlike :func:`skiplib.train.evaluate`'s default), so two equal functions score equally."""
    with exact_math():
        return evaluate(model, loader, device, amp=False)


# ------------------------------------------------------------------ experiments of the chapter


def block_stack(channels: int, layers: int, shortcut: str = "none", zero_init: bool = False) -> nn.Sequential:
    """``layers`` conv layers as ``layers // 2`` stride-1 BasicBlocks, He-initialised."""
    if layers < 2 or layers % 2:
        raise ValueError(f"layers counts the convs of BasicBlocks (two each): a positive even number, got {layers}")
    stack = he_init_(nn.Sequential(*[BasicBlock(channels, channels, 1, shortcut) for _ in range(layers // 2)]))
    if zero_init:
        for block in stack:
            block.zero_init_last()
    return stack


def relative_identity_error(model: nn.Module, x: torch.Tensor) -> float:
    """||f(x) - x||^2 / ||x||^2 in eval mode: 0 means f is the identity on these inputs."""
    model.eval()
    with torch.no_grad(), exact_math():
        return ((model(x) - x).pow(2).sum() / x.pow(2).sum()).item()


def fit_identity(model: nn.Module, x_train: torch.Tensor, x_test: torch.Tensor, *, steps: int, lr: float,
                 batch_size: int = 32, seed: int = 0, optimizer: str = "sgd") -> dict:
    """Train ``model`` to map feature maps to themselves (relative MSE loss, cosine lr schedule),
    with SGD (Nesterov momentum 0.9) or ``optimizer="adam"``.

    Returns the relative identity error on ``x_test`` before and after training (BN statistics
    recalibrated on ``x_train``) and the per-step training loss.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    g = torch.Generator().manual_seed(seed)
    calibrate_bn(model, x_train, batch_size=256)
    before = relative_identity_error(model, x_test)
    if optimizer not in ("sgd", "adam"):
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")
    if optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=lr)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    model.train()
    losses = []
    for _ in range(steps):
        xb = x_train[torch.randint(len(x_train), (batch_size,), generator=g).to(x_train.device)]
        loss = F.mse_loss(model(xb), xb) / xb.pow(2).mean()  # relative, like the reported error
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    calibrate_bn(model, x_train, batch_size=256)
    return {"before": before, "after": relative_identity_error(model, x_test), "losses": losses}


def loss_curve(model: nn.Module, loader, *, steps: int, lr: float = 0.1, momentum: float = 0.9,
               weight_decay: float = 5e-4, device: str | torch.device | None = None) -> list[float]:
    """Training loss at each of the first ``steps`` SGD steps at a constant ``lr`` (no warm-up):
    the regime where zero-initialised residual branches matter (Goyal et al. 2017)."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, nesterov=True, weight_decay=weight_decay)
    losses: list[float] = []
    while len(losses) < steps:
        for x, y in loader:
            loss = F.cross_entropy(model(x.to(device)), y.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
            if not math.isfinite(losses[-1]) or len(losses) == steps:
                return losses
    return losses
