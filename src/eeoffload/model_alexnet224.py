"""alexnet224: torchvision's AlexNet layer layout as a trunk for side branches, on 32x32 CIFAR
tensors resized to 224x224 inside the network, and the loading of torchvision AlexNet weights.

The layers are those of ``torchvision.models.AlexNet`` (torchvision/models/alexnet.py: ``features``,
``avgpool``, ``classifier``), named as our trunk names layers, and drawn in the same order (so under
one seed the trunk starts from the weights ``torchvision.models.alexnet(num_classes=10)`` draws).
Shapes for one image:

    resize   bilinear 32x32 -> 224x224 (F.interpolate, align_corners=False)  -> 3x224x224
    conv1    11x11, 64, stride 4, pad 2   -> 64x55x55
    relu1
    pool1    max 3/2 (floor)              -> 64x27x27
    conv2    5x5, 192, pad 2              -> 192x27x27
    relu2
    pool2    max 3/2                      -> 192x13x13
    conv3    3x3, 384, pad 1              -> 384x13x13
    relu3
    conv4    3x3, 256, pad 1              -> 256x13x13
    relu4
    conv5    3x3, 256, pad 1              -> 256x13x13
    relu5
    pool5    max 3/2                      -> 256x6x6
    avgpool  adaptive average 6x6         -> 256x6x6
    flatten                               -> 9216
    drop6 0.5, fc1 4096, relu6
    drop7 0.5, fc2 4096, relu7
    fc3 10                                -> final exit

This is the network the paper's authors branch (pachecobeto95/early_exit_calibration,
extra/training_b_alexnet_cifar.py: ``models.alexnet(pretrained=True)`` on CIFAR-10 resized to 224,
branch 1 after the first max-pool); they resize outside the network, we resize inside it so that
every model takes the same input and the device's latency includes the resize.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from eeoffload.layers import Flatten, Resize

INPUT_SIZE = 224

#: torchvision AlexNet state-dict prefix -> our trunk layer (each has ``.weight`` and ``.bias``).
TORCHVISION_LAYERS = {
    "features.0": "conv1", "features.3": "conv2", "features.6": "conv3", "features.8": "conv4",
    "features.10": "conv5", "classifier.1": "fc1", "classifier.4": "fc2", "classifier.6": "fc3",
}
#: The ImageNet head (1000 classes): skipped on load, our 10-class fc3 keeps its fresh weights.
IMAGENET_HEAD = {"classifier.6.weight": (1000, 4096), "classifier.6.bias": (1000,)}


def trunk_layers(num_classes: int = 10) -> list[tuple[str, nn.Module]]:
    """The named layers of the alexnet224 trunk, in execution order (torchvision's AlexNet)."""
    return [
        ("resize", Resize(INPUT_SIZE)),
        ("conv1", nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2)),
        ("relu1", nn.ReLU(inplace=True)),
        ("pool1", nn.MaxPool2d(kernel_size=3, stride=2)),
        ("conv2", nn.Conv2d(64, 192, kernel_size=5, padding=2)),
        ("relu2", nn.ReLU(inplace=True)),
        ("pool2", nn.MaxPool2d(kernel_size=3, stride=2)),
        ("conv3", nn.Conv2d(192, 384, kernel_size=3, padding=1)),
        ("relu3", nn.ReLU(inplace=True)),
        ("conv4", nn.Conv2d(384, 256, kernel_size=3, padding=1)),
        ("relu4", nn.ReLU(inplace=True)),
        ("conv5", nn.Conv2d(256, 256, kernel_size=3, padding=1)),
        ("relu5", nn.ReLU(inplace=True)),
        ("pool5", nn.MaxPool2d(kernel_size=3, stride=2)),
        ("avgpool", nn.AdaptiveAvgPool2d((6, 6))),
        ("flatten", Flatten()),
        ("drop6", nn.Dropout(p=0.5)),
        ("fc1", nn.Linear(256 * 6 * 6, 4096)),
        ("relu6", nn.ReLU(inplace=True)),
        ("drop7", nn.Dropout(p=0.5)),
        ("fc2", nn.Linear(4096, 4096)),
        ("relu7", nn.ReLU(inplace=True)),
        ("fc3", nn.Linear(4096, num_classes)),
    ]


def load_torchvision_alexnet(trunk_or_model: nn.Module, state_dict: dict[str, torch.Tensor]) -> list[str]:
    """Copy a torchvision-format AlexNet state dict into an alexnet224 trunk (or a model with a
    ``.trunk``); returns the keys skipped: ``classifier.6.*`` when it is ImageNet's 1000-class head
    (the 10-class fc3 stays as initialised), else none.

    Nothing is copied unless every key checks out. Raises ValueError naming the key and the
    expected and found shapes on a shape mismatch, or naming a missing or unexpected key.
    """
    trunk = getattr(trunk_or_model, "trunk", trunk_or_model)
    layers = dict(trunk.named_children())
    targets: dict[str, torch.Tensor] = {}
    for prefix, name in TORCHVISION_LAYERS.items():
        if name not in layers:
            raise ValueError(f"the trunk has no layer {name!r} for {prefix}: not an alexnet224 trunk")
        for part in ("weight", "bias"):
            targets[f"{prefix}.{part}"] = getattr(layers[name], part)
    unexpected = sorted(set(state_dict) - set(targets))
    if unexpected:
        raise ValueError(f"torchvision AlexNet state dict: unexpected key {unexpected[0]!r} "
                         f"({len(unexpected)} unexpected); expected only {', '.join(targets)}")
    skipped: list[str] = []
    for key, param in targets.items():
        if key not in state_dict:
            raise ValueError(f"torchvision AlexNet state dict: missing key {key!r} "
                             f"(expected shape {tuple(param.shape)})")
        found = tuple(state_dict[key].shape)
        if key in IMAGENET_HEAD and found == IMAGENET_HEAD[key] and found != tuple(param.shape):
            skipped.append(key)
        elif found != tuple(param.shape):
            raise ValueError(f"torchvision AlexNet state dict: key {key!r} has shape {found}, "
                             f"expected {tuple(param.shape)}")
    with torch.no_grad():
        for key, param in targets.items():
            if key not in skipped:
                param.copy_(state_dict[key])
    return skipped


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict file (``torch.load(path, map_location="cpu", weights_only=True)``: tensors only,
    no arbitrary unpickling); ValueError naming the file if it is not a {name: tensor} mapping."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a state dict {{name: tensor}} (torchvision AlexNet format)")
    return state
