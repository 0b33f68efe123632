"""The options of a run as typed, frozen values: parsed once from the command line
(`parse`), checked (`check`), split by concern (`Options`: runtime, data, method,
optimisation, evaluation, output), and merged with a checkpoint's stored options when a
run is resumed or evaluated (`merged`), which gives new values instead of changing any.

Lower layers take the part they need (a `DataOptions`, a `MethodOptions`, ...) or plain
values, never the whole set: only the entry points and this layer see it.
"""
import argparse
import dataclasses
import math
import os
from dataclasses import dataclass
from typing import Dict, FrozenSet, Iterable, List, Optional, Tuple

from ..data.datasets import DataOptions
from ..errors import SPQError
from ..method.network import SPQ, build_network
from .declared import AUTO, get_args_parser


@dataclass(frozen=True)
class RuntimeOptions:
    """Where and how a run computes."""
    gpu_id: str
    device: str                  # auto, cuda or cpu
    num_workers: int             # processes decoding image files
    sync_bn: bool
    precision: str               # fp32, bf16 or fp16 (a parse resolves nothing: see spq.run.device)
    compile: bool


@dataclass(frozen=True)
class MethodOptions:
    """The network and the method: what a resumed run must keep (with the precision, the
    input size, the batch size and the optimiser's values: METHOD_OPTIONS)."""
    backbone: str
    pretrained: Optional[str]    # imagenet or a file; used only when a run starts
    head: str
    N_books: int                 # M
    N_words: int                 # K
    L_word: int                  # L
    soft_quantization_scale: float    # t_q as the authors' code holds it (5.0; their README: 1 / 0.2)
    contrastive_temperature: float    # t_cqc
    augment: str
    freeze_bn_after_eval: bool


@dataclass(frozen=True)
class OptimOptions:
    """The optimiser, its schedule and the seed."""
    batch_size: int
    epochs: int
    lr: float
    weight_decay: float
    lr_schedule: str
    seed: int


@dataclass(frozen=True)
class EvalOptions:
    """When and how retrieval is measured."""
    eval_epoch: int
    Top_N: int                   # the cut-off of mAP@N; 0: the whole gallery
    distance: str                # adc or sdc
    adc_distance: str            # the per-book distance: euclidean or squared


@dataclass(frozen=True)
class OutputOptions:
    """Where a run writes, and what it continues."""
    output_dir: str
    tensorboard: Optional[str]
    resume: Optional[str]
    eval_only: bool


@dataclass(frozen=True)
class Options:
    """Every option of main_SPQ.py, by concern; `flat()` is what a checkpoint stores."""
    runtime: RuntimeOptions
    data: DataOptions
    method: MethodOptions
    optim: OptimOptions
    evaluation: EvalOptions
    output: OutputOptions

    def flat(self) -> Dict[str, object]:
        """{option name: value} of every option, as a checkpoint stores them ("args")."""
        return {f.name: getattr(part, f.name) for part in self._parts() for f in dataclasses.fields(part)}

    @classmethod
    def from_flat(cls, values: Dict[str, object]) -> "Options":
        """The options of {name: value} holding every option (extra names are ignored)."""
        return cls(*(kind(**{f.name: values[f.name] for f in dataclasses.fields(kind)}) for kind in PARTS))

    def replace(self, **changes) -> "Options":
        """These options with some values changed, by option name."""
        return Options.from_flat({**self.flat(), **changes})

    def _parts(self):
        return (self.runtime, self.data, self.method, self.optim, self.evaluation, self.output)


PARTS = (RuntimeOptions, DataOptions, MethodOptions, OptimOptions, EvalOptions, OutputOptions)

# Options that define the model or the method: a resumed run must keep them.
METHOD_OPTIONS = ("N_books", "N_words", "L_word", "input_size", "soft_quantization_scale",
                  "contrastive_temperature", "batch_size", "lr", "weight_decay", "lr_schedule",
                  "num_cls", "precision", "augment", "freeze_bn_after_eval", "resize", "backbone",
                  "head")
# Method options added after checkpoints were first written, with the behaviour those
# older checkpoints were trained with.
LEGACY_METHOD = {"augment": "simclr", "freeze_bn_after_eval": False, "resize": "crop",
                 "backbone": "cifar_resnet18", "head": "latest"}
# Options whose command-line value is not compared with the checkpoint's.
RUN_ONLY_OPTIONS = ("resume", "eval_only")
# Options naming files or folders: stored absolute in a checkpoint.
PATH_OPTIONS = ("data_dir", "output_dir", "train_list", "query_list", "gallery_list", "split_file",
                "tensorboard")

# The range of every numeric option, inclusive: the command line and a checkpoint's stored
# options are both checked against it (spq.store.schema runs `check` on stored values).
# Floats must also be finite. Sizes the machine cannot hold are refused later, where the
# machine is known (spq.run.device.check_memory).
MAX_INPUT_SIZE = 4096
RANGES = {
    "N_books": (1, 4096), "N_words": (2, 2 ** 16), "L_word": (1, 4096), "input_size": (8, MAX_INPUT_SIZE),
    "epochs": (1, 10 ** 7), "eval_epoch": (1, 10 ** 7), "batch_size": (2, 2 ** 20),
    "soft_quantization_scale": (1e-6, 1e6), "contrastive_temperature": (1e-4, 1e4),
    "lr": (0.0, 10.0), "weight_decay": (0.0, 10.0), "images_in_memory_gb": (0.0, 2.0 ** 20),
    "Top_N": (0, 2 ** 31), "num_workers": (0, 1024), "train_per_class": (0, 2 ** 31),
    "query_per_class": (0, 2 ** 31), "num_cls": (1, 10 ** 5), "seed": (0, 2 ** 32 - 2 ** 16),
}


def check(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Reject values that cannot work, before any work starts (p.error: exits with status 2)."""
    k = args.N_words
    if k < 2 or k & (k - 1):
        near = "2" if k < 2 else f"{1 << (k.bit_length() - 1)} or {1 << k.bit_length()}"
        p.error(f"--N_words must be a power of two of at least 2 (bits = N_books x log2(N_words)), "
                f"got {k}; try {near}")
    for name, (low, high) in RANGES.items():
        value = getattr(args, name)
        if isinstance(value, float) and not math.isfinite(value):
            p.error(f"--{name} must be a finite number, got {value}")
        if not low <= value <= high:
            if low == 0:
                kind = f"zero or positive, at most {high}"
            elif low in (1, 1e-6, 1e-4):
                kind = f"positive, from {low} to {high}"
            else:
                kind = f"at least {low} and at most {high}"
            p.error(f"--{name} must be {kind}, got {value}")
    if not args.gpu_id.strip().isdigit():
        p.error(f"--gpu_id must be a CUDA device index such as 0, got {args.gpu_id!r}")
    check_dataset_options(p, args)
    if args.pretrained and args.backbone == "cifar_resnet18":
        p.error("--pretrained needs a torchvision backbone (--backbone resnet18, resnet50 or vgg16); "
                "the CIFAR ResNet-18 has no ImageNet weights")
    if args.eval_only and not args.resume:
        p.error("--eval_only needs --resume PATH, the checkpoint to evaluate")


def check_dataset_options(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """A positive --num_cls; the list files go with --dataset list, which needs a training
    list (exits with status 2)."""
    if args.num_cls <= 0:
        p.error(f"--num_cls must be positive, got {args.num_cls}")
    lists = ["train_list", "query_list", "gallery_list"]
    given = [f"--{n}" for n in lists if getattr(args, n)]
    if args.split_file and (given or args.dataset == "folder"):
        p.error(f"--split_file replaces {', '.join(given) or 'the folders of --dataset folder'}: drop one of them")
    if args.dataset == "list" and not args.train_list and not args.split_file:
        p.error("--dataset list needs --train_list FILE (and --query_list FILE to evaluate), or --split_file FILE")
    if args.dataset != "list" and given:
        p.error(f"{', '.join(given)} need --dataset list (the dataset is {args.dataset})")


def explicit_options(argv: Optional[List[str]]) -> FrozenSet[str]:
    """Names of the options actually written on the command line (not defaulted)."""
    p = get_args_parser()
    for action in p._actions:
        action.default = argparse.SUPPRESS
    return frozenset(vars(p.parse_known_args(argv)[0]))


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """The command line as argparse gives it, checked (`check`)."""
    p = get_args_parser()
    args = p.parse_args(argv)
    check(p, args)
    return args


def parse(argv: Optional[List[str]] = None) -> Tuple[Options, FrozenSet[str]]:
    """(the options of this command line, the names of those typed on it)."""
    return Options.from_flat(vars(parse_args(argv))), explicit_options(argv)


def defaults() -> Dict[str, object]:
    """{option name: default} of every option."""
    return vars(get_args_parser().parse_args([]))


def network_of(method: MethodOptions) -> SPQ:
    """The SPQ network these method options describe, with fresh weights, on the CPU (no
    --pretrained: see `spq.run.pretrained`)."""
    return build_network(method.N_books, method.N_words, method.L_word, method.soft_quantization_scale,
                         method.backbone, method.head)


def stored_options(saved: Dict[str, object]) -> Options:
    """The options of a checkpoint's run from what it stored ("args", checked by
    spq.store.schema): an option it lacks takes the behaviour those checkpoints were
    trained with (LEGACY_METHOD), else its default."""
    return Options.from_flat({**defaults(), **LEGACY_METHOD, **saved})


def what_ran(values: Dict[str, object]) -> Dict[str, object]:
    """What a run trains or evaluates, from its options by name (a checkpoint's "args"; an
    option it lacks as `stored_options` fills it): the network, its input, its arithmetic,
    the method's choices and the dataset. A run's log starts with it, and retrieval.json and
    the results table show it."""
    o = stored_options(values)
    return {"backbone": o.method.backbone, "pretrained": o.method.pretrained, "head": o.method.head,
            "input_size": o.data.input_size, "resize": o.data.resize, "precision": o.runtime.precision,
            "N_books": o.method.N_books, "N_words": o.method.N_words, "L_word": o.method.L_word,
            "augment": o.method.augment, "freeze_bn_after_eval": o.method.freeze_bn_after_eval,
            "dataset": o.data.dataset}


def what_ran_text(ran: Dict[str, object]) -> str:
    """`what_ran` in words: e.g. "cifar_resnet18 at 32 px (crop), fp32", "resnet50 from
    ImageNet weights at 224 px (stretch), bf16", "vgg16 from weights r.pth at 64 px ...";
    then ", head first" for a head other than the latest, ", frozen BN" for the released
    script's run (--freeze_bn_after_eval)."""
    pretrained = ran["pretrained"]
    source = "" if not pretrained else " from ImageNet weights" if pretrained == "imagenet" else \
        f" from weights {os.path.basename(str(pretrained))}"
    head = "" if ran["head"] == "latest" else f", head {ran['head']}"
    frozen = ", frozen BN" if ran["freeze_bn_after_eval"] else ""
    return f"{ran['backbone']}{source} at {ran['input_size']} px ({ran['resize']}), {ran['precision']}{head}{frozen}"


def data_options(args: argparse.Namespace, stored: Dict[str, object]) -> DataOptions:
    """The DataOptions of a command that encodes a dataset with a checkpoint's model (python
    -m spq.index build, python -m spq.export): main_SPQ.py's dataset options as typed
    (`args`, declared by `spq.options.declared.add_dataset_options`), the input size and
    resizing rule of the checkpoint's run (`stored`), the other image options at their
    defaults."""
    trained = stored_options(stored).data
    values = {**defaults(), **vars(args), "input_size": trained.input_size, "resize": trained.resize}
    return DataOptions(**{f.name: values[f.name] for f in dataclasses.fields(DataOptions)})


def absolute_paths(options: Options) -> Options:
    """`options` with every path option made absolute (relative to the working directory),
    so that a checkpoint's run can be resumed or evaluated from any working directory."""
    flat = options.flat()
    return options.replace(**{name: os.path.abspath(flat[name]) for name in PATH_OPTIONS if flat[name]})


def merged(options: Options, saved: Dict, explicit: Iterable[str], path) -> Tuple[Options, List[str]]:
    """Reconcile the command line with a checkpoint's stored options `saved`: (the options
    of the resumed run, the lines to print).

    An option the user did not type takes the checkpoint's value (data, epochs,
    evaluation period, device, ...), except --output_dir, which becomes the folder
    holding the checkpoint (where its run wrote it); the first line lists what was taken
    where it differs from the default. A typed option overrides the checkpoint's value
    (one line per change), except those of METHOD_OPTIONS, which must keep it (SPQError
    naming the option). --precision is the arithmetic of the encoding for --eval_only, which
    may take another; a resumed run keeps the checkpoint's, and --precision auto there
    means it.
    """
    explicit = set(explicit)
    eval_only = options.output.eval_only
    if options.runtime.precision == AUTO and not eval_only:
        explicit.discard("precision")                      # auto: the run's own precision
    kept = [name for name in METHOD_OPTIONS if not (eval_only and name == "precision")]
    saved = {**LEGACY_METHOD, **saved}
    typed_lists = explicit & {"train_list", "query_list", "gallery_list"}
    if typed_lists and "split_file" not in explicit:       # typed images replace the run's split
        saved["split_file"] = None
    if "split_file" in explicit:                           # and a typed split the run's lists
        saved.update(train_list=None, query_list=None, gallery_list=None)
    current = options.flat()
    for name in kept:
        if name in saved and name in explicit and current[name] != saved[name]:
            raise SPQError(f"--{name} {current[name]} differs from the checkpoint's "
                           f"{saved[name]} ({path}); a resumed run keeps the model and method: "
                           f"drop --{name} or start a new run")
    taken, changed, values = [], [], dict(current)
    for name, value in sorted(current.items()):
        if name in RUN_ONLY_OPTIONS or (name not in saved and name != "output_dir"):
            continue
        if name in explicit:
            if saved.get(name, value) != value:
                changed.append(f"--{name} {value} (the checkpoint's run had {saved[name]})")
            continue
        new = os.path.dirname(os.path.abspath(path)) if name == "output_dir" else saved[name]
        values[name] = new
        if new != value:
            taken.append(f"--{name} {new}")
    line = (f"options from the checkpoint's run: {' '.join(taken)} (type an option to override it)"
            if taken else "options from the checkpoint's run: none needed (each option not typed has "
                          "the same value there)")
    return Options.from_flat(values), [line] + changed
