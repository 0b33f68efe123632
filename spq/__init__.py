"""SPQ: Self-supervised Product Quantization for deep unsupervised image retrieval.

One idea per module, in layers; a module uses only those of its own layer or below:

- errors, faults, safe_pickle: the errors a user can fix, fault points for tests,
  a restricted unpickler.
- math, pure functions: quantization (soft quantization, codes, code length), loss (the
  cross quantized contrastive loss), adc (ADC distances, exact top-k search), retrieval
  (mAP, precision@k, precision-recall).
- model and views: model (CIFAR ResNet-18 + PQ head), augment (the two views), schedule
  (learning rate), precision (autocast, loss scaling, memory layout).
- data: images (decoding files), data (Split, ImageSet, CIFAR-10), folder, lists (your
  own images), subset (per-class caps), datasets (the one dispatch of --dataset).
- running a model: distributed (torchrun), compiling (torch.compile with a fallback),
  evaluation (encoding images, their metrics), interrupt (signals as stop requests),
  checkpoint, schema, outdir (what a run writes and how it is checked), train (which
  wires everything into a run).
- tools on trained models: index (python -m spq.index, which takes its dataset options
  from the repository's args.py), faiss_export, grid, plot (python -m spq.plot).
"""
__version__ = "0.1.0"
