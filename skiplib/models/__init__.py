"""Models of the course, all reachable through ``create_model(name, **kw)``.

``cifar``: CIFAR-10 ResNets and plain nets (Chapter 1 on); ``imagenet``: torchvision-compatible
ResNets (Chapter 4); ``fc``: thin fully-connected nets, plain and highway (Chapter 3) and
Balduzzi et al.'s shattered-gradients net (Chapter 8); ``highway``: convolutional highway nets
(Chapter 3); ``densenet``: CIFAR DenseNets and torchvision-compatible DenseNet-121 (Chapter 5);
``unet``: U-Net (Chapter 6); ``preact``: pre-activation CIFAR ResNets (Chapters 7 and 8).
``transformer``: a small decoder-only Transformer with a selectable residual wiring (Chapter 9; it
reads token ids, not images, so it is not in the image-model registry).
``stages``: the stage builder and ``blocks()`` / ``zero_init_last()`` that the ResNets share;
``_weights``: the one loader of torchvision's pretrained weights (Chapters 4 and 5).
"""

from skiplib.models import (
           cifar,  # noqa: F401  (registers its models)
           densenet,  # noqa: F401  (registers densenet40, densenet_bc100, densenet121, Chapter 5)
           fc,  # noqa: F401  (registers highway_fc, plain_fc, Chapter 3)
           highway,  # noqa: F401  (registers highway20/32/56, Chapter 3)
           imagenet,  # noqa: F401  (registers resnet18/34/50, Chapter 4)
           preact,  # noqa: F401  (registers preact20 … preact110, Chapter 8)
           unet,  # noqa: F401  (registers unet, unet_noskip, Chapter 6)
)
from skiplib.models.cifar import CIFAR_DEPTHS, CifarResNet, cifar_resnet, plain_net
from skiplib.models.registry import count_parameters, create_model, list_models, register_model

__all__ = ["CIFAR_DEPTHS", "CifarResNet", "cifar_resnet", "count_parameters", "create_model", "list_models",
           "plain_net", "register_model"]

