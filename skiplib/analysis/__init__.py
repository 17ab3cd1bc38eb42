"""Measurements that explain why skips work, each usable on any model of :mod:`skiplib.models`.

``probes``: gradient and activation norms per layer and per block, BN calibration, line gradients
(Chapters 1, 4, 8). ``identity``: the identity-mapping construction: exact deepening, noise,
shrinking, identity fitting (Chapter 2); ``identity_bn``: the same construction where training
works, with BN normalising by batch statistics (Chapter 2). ``landscape``: filter-normalised directions and loss
surfaces (Chapter 8). ``ensemble``: Veit et al.'s paths through a residual net: path lengths,
block deletion and swapping (Chapter 8). ``memory``: tensor memory of a training step, dense
blocks naive vs memory-efficient (Chapter 5). ``reuse``: feature reuse in a DenseNet tested by
cutting one connection of a dense block at a time (Chapter 5). ``families``: every skip family at one parameter
budget, trained in one harness (Chapter 7). ``stream``: the Transformer's residual stream: gradient
norms per layer, the stream's norm, its exact split into the layers' contributions, one-layer lesions (Chapter 9).
``variance``: the signal's size after each block of a residual stack at initialisation; norm-free blocks, Fixup, SkipInit
(Chapter 2).
"""
