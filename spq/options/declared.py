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


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        "main_SPQ.py", allow_abbrev=False,
        description="Train SPQ (Self-supervised Product Quantization, Jang & Cho, ICCV 2021) "
                    "on CIFAR-10 or a folder of images without labels and evaluate retrieval "
                    "mAP with asymmetric distances. Defaults are the paper's CIFAR-10 32-bit setting, as "
                    "the authors' released script runs it.",
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
                   help="index of the CUDA device to use (as in the authors' script)")
    g.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"],
                   help="where to run: auto takes CUDA when available, else the CPU with a warning")
    g.add_argument("--num_workers", default=12, type=int,
                   help="worker processes that decode image files with Pillow for --dataset "
                        "folder (capped at the CPU count; 0 decodes in the main process); "
                        "CIFAR-10 needs none: it is held in memory as one uint8 tensor and "
                        "augmented batch-wise on the device (the authors used 12 loader workers)")

    _bool_option(g, "--sync_bn", False,
                 "under torchrun: BatchNorm statistics over the global batch (SyncBatchNorm, CUDA "
                 "only) instead of each process's share; the paper trains on one GPU, where the two agree")


def add_dataset_options(g) -> None:
    """Which dataset, and where: shared by main_SPQ.py and python -m spq.index build."""
    g.add_argument("--dataset", default="cifar10", choices=list(KINDS),
                   help="cifar10: the official python batches in --data_dir/cifar-10-batches-py "
                        "(paper); folder: your own images, --data_dir/train/ for training and, "
                        "when present, --data_dir/test/ as queries and --data_dir/gallery/ as the "
                        "database (else the training images), searched recursively for "
                        ".jpg .jpeg .png .bmp .webp; the first folder level names the class "
                        "(used only for evaluation); list: multi-label list files "
                        "(--train_list, --query_list, --gallery_list), as for FLICKR25K and "
                        "NUS-WIDE in the paper")
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
                 "download CIFAR-10 into --data_dir if missing (checksum verified); "
                 "accepts true/false, 1/0, or the bare flag for true")
    g.add_argument("--split_file", default=None, type=str, metavar="FILE",
                   help="a split.json of python -m spq.split: its queries, training images and "
                        "database replace the dataset's own (cifar10: drawn from the pooled "
                        "60,000; list: the query.txt, train.txt and database.txt beside it); "
                        "without it, cifar10 uses the official split (the paper's)")
    g.add_argument("--data_dir", default="./data", type=str,
                   help="folder holding cifar-10-batches-py/ (--dataset cifar10) or "
                        "train/ [test/ gallery/] (--dataset folder), or the folder the paths "
                        "of the list files are relative to (--dataset list)")
    g.add_argument("--num_cls", default=10, type=int,
                   help="number of classes in the labels (used only for evaluation); 10 for "
                        "CIFAR-10; --dataset list: the number of label columns (24 for "
                        "FLICKR25K, 21 for NUS-WIDE); --dataset folder counts its class folders")


def _image_options(g) -> None:
    g.add_argument("--input_size", default=32, type=int,
                   help="side in pixels of the images the network sees (views are cropped to "
                        "it, evaluation images resized to it); folder and list images are "
                        "decoded once to it: shorter side resized to it (bicubic), then the "
                        "central square cropped; paper: 32 for CIFAR-10, 64 advised by the "
                        "authors for FLICKR25K")
    g.add_argument("--resize", default="crop", choices=list(RESIZE),
                   help="how folder and list images are brought to --input_size when decoded: "
                        "crop, the shorter side resized (bicubic) then the central square; "
                        "stretch, the whole image resized to a square (bicubic), as the authors "
                        "prepared FLICKR25K (64 x 64); CIFAR-10 images are used as they are")
    g.add_argument("--train_per_class", default=0, type=int, metavar="N",
                   help="keep only the first N training images of each class, in the data's "
                        "order (images; 0: all; paper: all); to try the program on a subset in "
                        "minutes on a CPU; needs one class per image (CIFAR-10 or class folders); "
                        "a training set that is also the gallery shrinks with it, a separate "
                        "gallery stays whole")
    g.add_argument("--query_per_class", default=0, type=int, metavar="N",
                   help="keep only the first N query (test) images of each class, in the data's "
                        "order (images; 0: all; paper: all)")
    g.add_argument("--images_in_memory_gb", default=8.0, type=float,
                   help="--dataset folder or list: decoded images (3 x input_size^2 bytes "
                        "each, all sets together) up to this many GiB are held in memory (and on the "
                        "GPU); beyond it they are decoded once into a temporary memory-mapped "
                        "file in --output_dir and streamed from disk batch by batch")


def _method_options(g) -> None:
    g.add_argument("--backbone", default="cifar_resnet18", choices=list(BACKBONES),
                   help="the feature extractor: cifar_resnet18, the CIFAR ResNet-18 of the paper and "
                        "the authors' code (3x3 stem, no max-pool, a 512-512 layer); or torchvision's "
                        "resnet18, resnet50 (pooled features, 512 and 2048) or vgg16 (fc7, 4096), "
                        "behind ImageNet's normalisation; the quantization head sits on its features")
    g.add_argument("--pretrained", default=None, metavar="imagenet|FILE",
                   help="a torchvision backbone starts from ImageNet weights: imagenet takes "
                        "torchvision's IMAGENET1K_V1 weights (from its cache in $TORCH_HOME, else "
                        "downloaded), FILE a state dict of that network saved with torch.save; used "
                        "only when a run starts (a resumed run has its own weights)")
    g.add_argument("--head", default="latest", choices=list(HEADS),
                   help="how the projection and the codebooks start, as in the authors' released "
                        "script: latest, its current version (projection with bias, Xavier-uniform "
                        "weights and codebooks); first, its first release (no bias, Xavier-normal "
                        "with gain 0.1); which one produced the paper's numbers is not known")
    g.add_argument("--N_books", default=8, type=int,
                   help="M, the number of codebooks (sub-spaces); paper: 8 for 32 bits")
    g.add_argument("--N_words", default=16, type=int,
                   help="K, codewords per codebook, a power of two; bits = N_books x log2(N_words); "
                        "paper: 16")
    g.add_argument("--L_word", default=16, type=int,
                   help="L, length of each codeword (descriptor width = N_books x L_word); paper: 16")
    g.add_argument("--soft_quantization_scale", default=5.0, type=float,
                   help="t_q, scale of the squared distances in the soft-quantization softmax; "
                        "the paper prints 0.2 because it divides by it: 1/0.2 = 5.0")
    g.add_argument("--contrastive_temperature", default=0.5, type=float,
                   help="t_cqc, temperature of the cross quantized contrastive loss; paper: 0.5")
    g.add_argument("--augment", default="authors", choices=list(AUGMENTATIONS),
                   help="how the two views are made. authors: what the authors' script does on "
                        "kornia 0.5.10, the version it pins (additive-brightness "
                        "colour jitter, a fixed horizontal-only 3-tap blur, crops strictly "
                        "smaller than the image); simclr: the SimCLR pipeline the paper "
                        "describes, as kornia does it today (torchvision-style colour jitter, "
                        "blur sigma drawn from 0.1..2.0 per image)")
    _bool_option(g, "--freeze_bn_after_eval", False,
                 "after the first evaluation, keep training with the model in eval mode "
                 "(BatchNorm frozen at its running statistics), as the authors' script did by "
                 "never switching back; off: training always uses batch statistics")


def _optimisation_options(g) -> None:
    g.add_argument("--batch_size", default=256, type=int,
                   help="images per step (each gives two views); at least 2; under torchrun the "
                        "global batch, split evenly among the processes (a multiple of their "
                        "number), so it means the same on any number of GPUs; paper: 256")
    g.add_argument("--epochs", default=2000, type=int,
                   help="training epochs (passes over the training set); paper: 2000")
    g.add_argument("--lr", default=3e-4, type=float, help="Adam learning rate; paper: 3e-4 (0 trains nothing but the BatchNorm "
                        "statistics: a control run)")
    g.add_argument("--weight_decay", default=1e-5, type=float,
                   help="Adam weight decay (L2 added to the gradient); paper: 1e-5")
    g.add_argument("--lr_schedule", default="authors", choices=list(SCHEDULES),
                   help="authors: constant for 11 epochs, then PyTorch CosineAnnealingLR with "
                        "T_max = steps per epoch, stepped once per epoch (periodic: LR reaches 0 "
                        "at epoch 206 at batch 256, then rises again), as in the authors' code; "
                        "cosine: one decay to 0 over --epochs; constant: --lr throughout")
    g.add_argument("--precision", default="fp32", choices=list(PRECISIONS),
                   help="arithmetic of the CNN in training and when the evaluation encodes "
                        "images: fp32, or bf16/fp16 autocast (soft quantization and the loss "
                        "always run in fp32; fp16 adds loss scaling). On a CPU with bf16 "
                        "instructions (AVX-512 BF16, AMX) bf16 trained 1.7 to 2.5 times and "
                        "encoded 3 times as fast as fp32 (docs/benchmarks.md); on a CPU "
                        "without them it is refused. The paper trains in fp32")
    _bool_option(g, "--compile", False,
                 "compile the network with torch.compile (slower start, faster steps on GPUs); "
                 "falls back to plain execution with a warning where unsupported")
    g.add_argument("--seed", default=0, type=int,
                   help="seed for weights, shuffling and augmentation (the paper gives none); "
                        "CPU runs repeat exactly, CUDA runs up to cuDNN's nondeterminism")


def _output_options(g) -> None:
    g.add_argument("--eval_epoch", default=100, type=int,
                   help="evaluate mAP every this many epochs, and after the last one")
    g.add_argument("--Top_N", default=1000, type=int,
                   help="mAP@Top_N: how many retrieved items each query's AP looks at; 0 means "
                        "the whole gallery; paper: 1000 on CIFAR-10, 5000 on FLICKR25K and "
                        "NUS-WIDE")
    g.add_argument("--distance", default="adc", choices=["adc", "sdc"],
                   help="adc: queries keep their descriptors and gallery items are codes "
                        "(asymmetric, the paper's); sdc: queries are coded too, and each book "
                        "compares two codewords (symmetric, as several peer methods also report)")
    g.add_argument("--adc_distance", default="euclidean", choices=list(DISTANCES),
                   help="how a query descriptor and a gallery code are compared: the sum over "
                        "books of the Euclidean distance to the selected codeword (euclidean: "
                        "the paper's and the authors' evaluation), or of its square (squared: "
                        "the squared distance to the item's reconstruction, as FAISS's IndexPQ "
                        "ranks)")
    g.add_argument("--tensorboard", default=None, type=str, metavar="DIR",
                   help="also write each epoch's loss, learning rate and metrics as TensorBoard "
                        "scalars into DIR (needs the optional tensorboard package); log.jsonl "
                        "stays the record")
    g.add_argument("--output_dir", default=".", type=str,
                   help="folder for log.jsonl, last.pth (every epoch) and best.pth (best mAP, "
                        "the model only); one training run at a time: a second run on a folder "
                        "in use is refused (see docs/crash-safety.md); when resuming without it: "
                        "the folder holding the checkpoint")
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
