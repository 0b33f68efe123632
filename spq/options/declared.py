"""Every command-line option of main_SPQ.py, declared once: its name, default, unit and
source in its help (`get_args_parser`). What a value must be, the typed values a parse
gives and what a resumed run does with them: `spq.options.values`. The dataset options
also serve python -m spq.index build and python -m spq.export. The top-level args.py shows
them to a user (python args.py prints them all).

The authors' options keep their spelling, default and meaning, so their documented
command runs unchanged:
    python main_SPQ.py --gpu_id=0 --batch_size=256 --N_books=8 --N_words=16 --eval_epoch=100
"""
import argparse

from ..data.datasets import KINDS
from ..data.images import RESIZE
from ..method.network import BACKBONES, HEADS
from ..method.step import PRECISIONS, SCHEDULES

AUTO = "auto"          # --precision auto: chosen by the device (spq.run.device.auto_precision)
from ..method.views import AUGMENTATIONS
from ..retrieval.distances import DISTANCES


def str2bool(value: str) -> bool:
    """Parse a boolean as people write it: true/false, yes/no, on/off, 1/0 (any case)."""
    v = str(value).strip().lower()
    if v in ("true", "t", "yes", "y", "on", "1"):
        return True
    if v in ("false", "f", "no", "n", "off", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean (true/false, 1/0, yes/no), got {value!r}")


def _bool_option(parser, name, default, help):
    # `--flag` alone means True; `--flag false`, `--flag=0` and the like mean False
    parser.add_argument(name, type=str2bool, nargs="?", const=True, default=default,
                        metavar="BOOL", help=help)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" to an option's help unless X is None (an option without a
    value, or whose help says what it falls back to)."""

    def _get_help_string(self, action):
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


SOURCES = ("Every default names its source: the authors' code (github.com/youngkyunJang/SPQ, main_SPQ.py "
           "at a0c7414 unless said), their README, one of their issues (#N), a peer's code, or this "
           "project's choice. The paper is cited only for what a readable copy of it says; this project "
           "has none of its experimental section, so no default is credited to it.")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        "main_SPQ.py", allow_abbrev=False,
        description="Train SPQ (Self-supervised Product Quantization, Jang & Cho, ICCV 2021) "
                    "on CIFAR-10, a folder of images or labelled list files, without labels, and "
                    "evaluate retrieval mAP with asymmetric distances. The defaults are the CIFAR-10 "
                    "32-bit run of the authors' released script, BatchNorm aside: it keeps training "
                    "after an evaluation here (--freeze_bn_after_eval gives the script's run). "
                    + SOURCES,
        formatter_class=HelpFormatter)
    _hardware_options(p.add_argument_group("hardware"))
    g = p.add_argument_group("data")
    add_dataset_options(g)
    _image_options(g)
    _method_options(p.add_argument_group("model and method"))
    _optimisation_options(p.add_argument_group("optimisation"))
    _output_options(p.add_argument_group("evaluation, output and resuming"))
    return p


def _hardware_options(g) -> None:
    g.add_argument("--gpu_id", default="0", type=str,
                   help="index of the CUDA device to use (default: the authors' code)")
    g.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"],
                   help="where to run: auto takes CUDA when available, else the CPU with a warning "
                        "(this project's choice; the authors' code runs on CUDA only)")
    g.add_argument("--num_workers", default=12, type=int,
                   help="worker processes that decode image files with Pillow for --dataset "
                        "folder and list (capped at the CPU count; 0 decodes in the main process); "
                        "CIFAR-10 needs none: it is held in memory as one uint8 tensor and "
                        "augmented batch-wise on the device (default: the authors' code, where 12 "
                        "were its data loader's workers)")

    _bool_option(g, "--sync_bn", False,
                 "under torchrun: BatchNorm statistics over the global batch (SyncBatchNorm, CUDA "
                 "only) instead of each process's share (default off: this project's choice; the "
                 "authors' script runs on one GPU, where the two agree)")


def add_dataset_options(g) -> None:
    """Which dataset, and where: shared by main_SPQ.py, python -m spq.index build and python -m
    spq.export."""
    g.add_argument("--dataset", default="cifar10", choices=list(KINDS),
                   help="cifar10: the official python batches in --data_dir/cifar-10-batches-py "
                        "(default: the authors' code trains on CIFAR-10 only); folder: your own "
                        "images, --data_dir/train/ for training and, when present, --data_dir/test/ "
                        "as queries and --data_dir/gallery/ as the database (else the training "
                        "images), searched recursively for .jpg .jpeg .png .bmp .webp; the first "
                        "folder level names the class (used only for evaluation); list: multi-label "
                        "list files (--train_list, --query_list, --gallery_list), as python -m "
                        "spq.prepare writes them for FLICKR25K and NUS-WIDE")
    g.add_argument("--train_list", default=None, type=str, metavar="FILE",
                   help="--dataset list: the training images, one per line: a path relative to "
                        "--data_dir, then --num_cls label values 0/1")
    g.add_argument("--query_list", default=None, type=str, metavar="FILE",
                   help="--dataset list: the query images for evaluation, same format "
                        "(without it, evaluation is skipped)")
    g.add_argument("--gallery_list", default=None, type=str, metavar="FILE",
                   help="--dataset list: the retrieval database, same format; default: the "
                        "training list")
    _bool_option(g, "--allow_outside_data_dir", False,
                 "--dataset list: accept list paths that lie outside --data_dir (absolute, or "
                 "climbing out with ..); by default such a line is an error, as list paths are "
                 "relative to --data_dir")
    _bool_option(g, "--if_download", False,
                 "download CIFAR-10 into --data_dir if missing (checksum verified); accepts "
                 "true/false, 1/0, or the bare flag for true (default: the authors' code)")
    g.add_argument("--split_file", default=None, type=str, metavar="FILE",
                   help="a split.json of python -m spq.split: its queries, training images and "
                        "database replace the dataset's own (cifar10: drawn from the pooled "
                        "60,000; list: the query.txt, train.txt and database.txt beside it); "
                        "without it, cifar10 uses the official split (as the authors' code does)")
    g.add_argument("--data_dir", default="./data", type=str,
                   help="folder holding cifar-10-batches-py/ (--dataset cifar10) or "
                        "train/ [test/ gallery/] (--dataset folder), or the folder the paths "
                        "of the list files are relative to (--dataset list) (default: the authors' code)")
    g.add_argument("--num_cls", default=10, type=int,
                   help="number of classes in the labels (used only for evaluation; default: the "
                        "authors' code, CIFAR-10's 10); --dataset list: the number of label columns "
                        "(24 for FLICKR25K, 21 for NUS-WIDE as python -m spq.prepare lists them); "
                        "--dataset folder counts its class folders")


def add_precision_option(g, default: str) -> None:
    """--precision of the commands that encode with a trained model (python -m spq.index,
    python -m spq.export): `default` says which precision they take without it."""
    g.add_argument("--precision", default=None, choices=[*PRECISIONS, AUTO],
                   help=f"arithmetic of the encoding: fp32, bf16, fp16, or auto (bf16 where the device "
                        f"runs it natively, else fp32); bf16 is refused on a CPU without bf16 "
                        f"instructions; default: {default}")


def _image_options(g) -> None:
    g.add_argument("--input_size", default=32, type=int,
                   help="side in pixels of the images the network sees (views are cropped to "
                        "it, evaluation images resized to it); folder and list images are "
                        "decoded once to it by --resize (default: the authors' code, CIFAR-10's "
                        "32; 64 for FLICKR25K: the authors' issue #10)")
    g.add_argument("--resize", default="crop", choices=list(RESIZE),
                   help="how folder and list images are brought to --input_size when decoded: "
                        "crop, the shorter side resized (bicubic) then the central square (default: "
                        "this project's choice); stretch, the whole image resized to a square "
                        "(bicubic), as the authors prepared FLICKR25K (64 x 64: their issue #10); "
                        "CIFAR-10 images are used as they are")
    g.add_argument("--train_per_class", default=0, type=int, metavar="N",
                   help="keep only the first N training images of each class, in the data's "
                        "order (0: all, as the authors' code trains); to try the program on a "
                        "subset in minutes on a CPU; needs one class per image (CIFAR-10 or class "
                        "folders); a training set that is also the gallery shrinks with it, a "
                        "separate gallery stays whole")
    g.add_argument("--query_per_class", default=0, type=int, metavar="N",
                   help="keep only the first N query (test) images of each class, in the data's "
                        "order (0: all, as the authors' code evaluates)")
    g.add_argument("--images_in_memory_gb", default=8.0, type=float,
                   help="--dataset folder or list: decoded images (3 x input_size^2 bytes "
                        "each, all sets together) up to this many GiB are held in memory (and on the "
                        "GPU); beyond it they are decoded once into a temporary memory-mapped "
                        "file in --output_dir and streamed from disk batch by batch (default: this "
                        "project's choice)")


def _method_options(g) -> None:
    g.add_argument("--backbone", default="cifar_resnet18", choices=list(BACKBONES),
                   help="the feature extractor: cifar_resnet18, the CIFAR ResNet-18 of the authors' "
                        "code (3x3 stem, no max-pool, a 512-512 layer; the default); or torchvision's "
                        "resnet18, resnet50 (pooled features, 512 and 2048) or vgg16 (fc7, 4096), "
                        "behind ImageNet's normalisation (this project's options; which backbone the "
                        "authors used for FLICKR25K and NUS-WIDE is not in their released code); the "
                        "quantization head sits on its features")
    g.add_argument("--pretrained", default=None, metavar="imagenet|FILE",
                   help="a torchvision backbone starts from ImageNet weights: imagenet takes "
                        "torchvision's IMAGENET1K_V1 weights (from its cache in $TORCH_HOME, else "
                        "downloaded), FILE a state dict of that network saved with torch.save; used "
                        "only when a run starts (a resumed run has its own weights); default: none "
                        "(the authors' code starts from scratch)")
    g.add_argument("--head", default="latest", choices=list(HEADS),
                   help="how the projection and the codebooks start, in the authors' three releases "
                        "of main_SPQ.py: latest, their current script (commit a0c7414, 2021-12-12: "
                        "projection with bias, Xavier-uniform weights and codebooks; the default); "
                        "second (a3fd439, 2021-12-06: no bias, Xavier-normal with gain 1; this "
                        "project could not open that version: commit and values as the audit in "
                        "its issue #34 records them); first, their first release (4e487f1, "
                        "2021-09-22: no bias, Xavier-normal with gain 0.1). Which one produced "
                        "the paper's numbers is not known")
    g.add_argument("--N_books", default=8, type=int,
                   help="M, the number of codebooks (sub-spaces); 8 for 32 bits (default: the "
                        "authors' code and README; 16 and 64 bits in docs/experiments.md)")
    g.add_argument("--N_words", default=16, type=int,
                   help="K, codewords per codebook, a power of two; bits = N_books x log2(N_words) "
                        "(default: the authors' code and README)")
    g.add_argument("--L_word", default=16, type=int,
                   help="L, length of each codeword (descriptor width = N_books x L_word) "
                        "(default: the authors' code)")
    g.add_argument("--soft_quantization_scale", default=5.0, type=float,
                   help="t_q, scale of the squared distances in the soft-quantization softmax "
                        "(default: the authors' code; their README: the paper's 0.2 divides, so "
                        "1/0.2 = 5.0 multiplies)")
    g.add_argument("--contrastive_temperature", default=0.5, type=float,
                   help="t_cqc, temperature of the cross quantized contrastive loss (default: the "
                        "authors' code)")
    g.add_argument("--augment", default="authors", choices=list(AUGMENTATIONS),
                   help="how the two views are made. authors (the default): what the authors' "
                        "script does on kornia 0.5.10, the version their README pins "
                        "(additive-brightness colour jitter, a fixed horizontal-only 3-tap blur, "
                        "crops strictly smaller than the image); simclr: SimCLR's pipeline, which "
                        "a comment of their code says it follows, as kornia does it today "
                        "(torchvision-style colour jitter, blur sigma drawn from 0.1..2.0 per image)")
    _bool_option(g, "--freeze_bn_after_eval", False,
                 "the authors' released script's run: after the first evaluation, keep training "
                 "with the model in eval mode (BatchNorm frozen at its running statistics), as "
                 "their script does by never switching back after its evaluation; default off "
                 "(this project's choice: the method, in which training always uses batch "
                 "statistics; docs/differences.md)")


def _optimisation_options(g) -> None:
    g.add_argument("--batch_size", default=256, type=int,
                   help="images per step (each gives two views); at least 2; under torchrun the "
                        "global batch, split evenly among the processes (a multiple of their "
                        "number), so it means the same on any number of GPUs (default: the "
                        "authors' code and README)")
    g.add_argument("--epochs", default=2000, type=int,
                   help="training epochs (passes over the training set); default: the authors' "
                        "README (\"you need to train the model over 2,000 epochs with default "
                        "setup\"); their script loops 5,000 epochs, and their issue #6 says it "
                        "converges at about 3,000")
    g.add_argument("--lr", default=3e-4, type=float,
                   help="Adam learning rate (default: the authors' code); 0 trains nothing but the "
                        "BatchNorm statistics: a control run")
    g.add_argument("--weight_decay", default=1e-5, type=float,
                   help="Adam weight decay (L2 added to the gradient) (default: the authors' code, "
                        "written 10e-6 there)")
    g.add_argument("--lr_schedule", default="authors", choices=list(SCHEDULES),
                   help="authors (the default, their code): constant for 11 epochs, then PyTorch "
                        "CosineAnnealingLR with T_max = steps per epoch, stepped once per epoch "
                        "(periodic: LR reaches 0 at epoch 206 at batch 256, then rises again); "
                        "cosine: one decay to 0 over --epochs; constant: --lr throughout")
    g.add_argument("--precision", default="fp32", choices=[*PRECISIONS, AUTO],
                   help="arithmetic of the CNN in training and when the evaluation encodes "
                        "images: fp32, or bf16/fp16 autocast (soft quantization and the loss "
                        "always run in fp32; fp16 adds loss scaling); auto: bf16 where the "
                        "device runs it natively (a CPU with AVX-512 BF16 or AMX, a GPU of "
                        "compute capability 8.0 or later), else fp32; the log and checkpoints "
                        "record the one chosen. On a CPU with bf16 instructions bf16 trained 1.7 "
                        "to 2.5 times and encoded 3 times as fast as fp32 (docs/benchmarks.md); "
                        "on a CPU without them bf16 is refused. Default fp32: the authors' code "
                        "has no mixed precision. With --eval_only: the arithmetic of the "
                        "encoding (default: the checkpoint's)")
    _bool_option(g, "--compile", False,
                 "compile the network with torch.compile (slower start, faster steps on GPUs); "
                 "falls back to plain execution with a warning where unsupported (default off: "
                 "this project's choice)")
    g.add_argument("--seed", default=0, type=int,
                   help="seed for weights, shuffling and augmentation (default: this project's "
                        "choice; the authors' code sets none); CPU runs repeat exactly, CUDA runs "
                        "up to cuDNN's nondeterminism")


def _output_options(g) -> None:
    g.add_argument("--eval_epoch", default=100, type=int,
                   help="evaluate mAP every this many epochs, and after the last one (default: the "
                        "authors' code and README)")
    g.add_argument("--Top_N", default=1000, type=int,
                   help="mAP@Top_N: how many retrieved items each query's AP looks at; 0 means "
                        "the whole gallery (default: the authors' code, for CIFAR-10; 5000 for "
                        "NUS-WIDE as the peer DeepHash-pytorch computes it, and for FLICKR25K this "
                        "project's choice, docs/experiments.md)")
    g.add_argument("--distance", default="adc", choices=["adc", "sdc"],
                   help="adc: queries keep their descriptors and gallery items are codes "
                        "(asymmetric; the default: the authors' evaluation); sdc: queries are "
                        "coded too, and each book compares two codewords (symmetric)")
    g.add_argument("--adc_distance", default="euclidean", choices=list(DISTANCES),
                   help="how a query's sub-vector and a gallery item's codeword are compared in "
                        "each book, under --distance adc or sdc, summed over the books: euclidean "
                        "(the default: the authors' evaluation), or squared (the sum is then the "
                        "squared distance to the item's reconstruction, as FAISS's IndexPQ ranks)")
    g.add_argument("--tensorboard", default=None, type=str, metavar="DIR",
                   help="also write each epoch's loss, learning rate and metrics as TensorBoard "
                        "scalars into DIR (needs the optional tensorboard package); log.jsonl "
                        "stays the record")
    g.add_argument("--output_dir", default=".", type=str,
                   help="folder for log.jsonl, last.pth (every epoch) and best.pth (best mAP, "
                        "the model only); one training run at a time: a second run on a folder "
                        "in use is refused (see docs/crash-safety.md); when resuming without it: "
                        "the folder holding the checkpoint (default: the authors' code)")
    g.add_argument("--resume", default=None, type=str, metavar="PATH|auto",
                   help="continue the run saved in this checkpoint (e.g. OUTPUT_DIR/last.pth): "
                        "every option not typed is taken from the checkpoint's run (data, "
                        "epochs, evaluation period, device, ...); typed ones override it, "
                        "except the model and method options, which must match; 'auto' "
                        "continues from OUTPUT_DIR/last.pth when it exists and starts a new "
                        "run otherwise; best.pth holds no optimizer state: it serves "
                        "--eval_only, and training from it is refused (continue from last.pth)")
    _bool_option(g, "--eval_only", False,
                 "with --resume: train nothing; evaluate the checkpoint's model on its run's "
                 "data, print every retrieval metric (mAP@Top_N, mAP over the whole gallery, "
                 "precision@k, precision-recall) and write them to OUTPUT_DIR/retrieval.json "
                 "(OUTPUT_DIR: the checkpoint's folder unless --output_dir is given)")
