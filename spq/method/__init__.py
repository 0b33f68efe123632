"""The paper's method, and nothing else: read top to bottom.

    network.py        the CIFAR ResNet-18 (or a torchvision backbone) and the PQ head: descriptor x, codebooks
    quantization.py   soft quantization z of a descriptor, hard codes, code length
    loss.py           the cross quantized contrastive loss of two views
    views.py          the two augmented views of a batch (the authors' pipeline, or SimCLR's)
    step.py           one training step, and the learning rate of each epoch

Plain functions and modules of torch: no options, files, progress bars or processes.
"""
