"""The allowed values of the training knobs, without importing torch (params validation stays light).

:mod:`eeoffload.training` implements each of them; ``tests/test_training_recipes.py`` checks that
every value here has an implementation.
"""

from __future__ import annotations

#: Augmentation of the training batches (on the training device, one draw per image):
#: ``none`` (BranchyNet), ``crop_flip`` (random crop with zero padding 4, horizontal flip p=0.5),
#: ``authors`` (the paper's authors' B-AlexNet scripts: horizontal flip p=0.25, rotation by an
#: angle uniform in [-25, 25] degrees).
AUGMENTATIONS = ("none", "crop_flip", "authors")
OPTIMIZERS = ("adam", "sgd")
#: Learning rate per epoch: ``constant``, or ``cosine`` annealing from ``lr`` to 0 over all epochs.
SCHEDULES = ("constant", "cosine")
#: ``bf16``: autocast around the forward pass and the loss (fp32 master weights, optimizer state,
#: LRN, loss and written logits).
PRECISIONS = ("fp32", "bf16")
