"""SPQ: Self-supervised Product Quantization for deep unsupervised image retrieval.

Modules, one idea each: `quantization` (soft quantization, codes), `loss` (the
cross quantized contrastive loss), `model` (CIFAR ResNet-18 + PQ head), `augment`
(the two views), `data` (ImageSet, CIFAR-10), `images` (decoding image files),
`folder` (your own images), `lists` (multi-label list files), `adc` (ADC distances,
exact top-k search), `retrieval` (mAP, precision@k, precision-recall), `evaluation`
(encoding images), `schedule` (LR), `checkpoint`, `plot` (pictures of a run), and
`train` (which wires them into a run).
"""
__version__ = "0.1.0"
