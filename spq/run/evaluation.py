"""Retrieval quality of a model on a run's data: mAP during training (`measure_map`), and
with --eval_only every metric of a checkpoint, printed and written to
OUTPUT_DIR/retrieval.json (`evaluate_checkpoint`)."""
import time
from typing import Dict

from ..files.write import atomic_save_json
from ..method.network import SPQ
from ..options.values import EvalOptions, what_ran_text
from ..retrieval.metrics import mean_average_precision, retrieval_metrics
from ..store.checkpoint import load_state
from .distributed import World, on_main
from .encode import encode_sets
from .setup import Setup


def measure(model: SPQ, gallery, queries, input_size: int, evaluation: EvalOptions, precision: str,
            world: World = World(), every: bool = False):
    """mAP@Top_N of the model on (images, labels) `gallery` and `queries`, or with `every`
    every metric of `retrieval_metrics`: the gallery stored as codes, the queries as
    descriptors (ADC) or coded too (--distance sdc), the per-book distance
    --adc_distance; the images encoded under `precision` (`spq.run.encode.describe`).

    With several processes, every one encodes its shard, rank 0 alone ranks, and every
    process receives the result."""
    codes, descriptors = encode_sets(model, gallery[0], queries[0], input_size, world=world,
                                     sdc=evaluation.distance == "sdc", precision=precision)
    top_n = evaluation.Top_N or None

    def score():
        books = model.codebooks.detach()
        if every:
            return retrieval_metrics(descriptors, queries[1], codes, gallery[1], books, top_n,
                                     distance=evaluation.adc_distance)
        return mean_average_precision(descriptors, queries[1], codes, gallery[1], books, top_n,
                                      evaluation.adc_distance)
    return on_main(world, score) if world.distributed else score()


def evaluate_checkpoint(setup: Setup, evaluation: EvalOptions, ran: Dict, resume: str, ckpt) -> int:
    """Load the checkpoint's model, measure every metric (`measure`), print them and write
    retrieval.json, which records what ran (`ran`: `spq.options.values.what_ran`)."""
    load_state(setup.model, ckpt["model"], "model", resume)
    t0 = time.time()
    metrics = measure(setup.model, setup.gallery, setup.queries, setup.input_size, evaluation,
                      setup.precision, setup.world, every=True)
    if not setup.world.main:
        return 0
    split = {k: setup.split_record[k] for k in ("protocol", "seed", "hash")}
    result = {"checkpoint": str(resume), "epoch": ckpt["epoch"], "bits": setup.model.bits, "model": ran,
              "split": split,
              "distance": evaluation.distance, "adc_distance": evaluation.adc_distance,
              "queries": len(setup.queries[0]), "gallery": len(setup.gallery[0]),
              "queries_without_labels": setup.data.unlabelled_queries(), **metrics,
              "top_n": evaluation.Top_N, "seconds": round(time.time() - t0, 3)}
    atomic_save_json(result, setup.out / "retrieval.json")
    print(format_metrics(result))
    print(f"written to {setup.out / 'retrieval.json'}")
    return 0


def format_metrics(result: Dict[str, object]) -> str:
    """The human-readable report of an `--eval_only` result."""
    top = result["top_n"] or "all"
    pr = result["precision_recall"]
    lines = [f"{result['checkpoint']} (epoch {result['epoch']}): {result['bits']} bits, "
             f"{what_ran_text(result['model'])}, {result['queries']} queries, {result['gallery']} gallery "
             f"codes, {result['seconds']:.1f}s",
             f"distance: {result['distance'].upper()}, per book {result['adc_distance']}",
             f"mAP@{top} = {result['mAP']:.4f}   mAP over the whole gallery = {result['mAP_all']:.4f}",
             "precision@k: " + "  ".join(f"@{k} {v:.4f}" for k, v in result["precision_at_k"].items()),
             "precision-recall at rank cut-offs:"]
    lines += [f"  {n:>8}  precision {p:.4f}  recall {r:.4f}"
              for n, p, r in zip(pr["cutoffs"], pr["precision"], pr["recall"])]
    if result.get("queries_without_labels"):
        lines.append(f"{result['queries_without_labels']} queries carry no label at all "
                     f"(AP 0, kept in every mean)")
    if result["queries_without_relevant"]:
        lines.append(f"{result['queries_without_relevant']} queries have no relevant gallery item "
                     f"(AP 0; left out of the recall average)")
    return "\n".join(lines)
