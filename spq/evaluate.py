"""--eval_only: every retrieval metric of a checkpoint's model on its run's data, printed and
written to OUTPUT_DIR/retrieval.json."""
import time
from typing import Dict

from .checkpoint import load_state
from .fileio import atomic_save_json
from .retrieval import measure_all
from .setup import Setup


def evaluate_checkpoint(setup: Setup, resume: str, ckpt) -> int:
    """Load the checkpoint's model, measure every metric (`spq.retrieval.measure_all`), print
    them and write retrieval.json."""
    load_state(setup.model, ckpt["model"], "model", resume)
    args = setup.args
    t0 = time.time()
    metrics = measure_all(setup.model, *setup.gallery, *setup.queries, args.input_size,
                          args.Top_N or None, args.adc_distance, setup.world, sdc=args.distance == "sdc",
                          precision=args.precision)
    if not setup.world.main:
        return 0
    split = {k: setup.split[k] for k in ("protocol", "seed", "hash")}
    result = {"checkpoint": str(resume), "epoch": ckpt["epoch"], "bits": setup.model.bits, "split": split,
              "distance": args.distance, "adc_distance": args.adc_distance,
              "queries": len(setup.queries[0]), "gallery": len(setup.gallery[0]),
              "queries_without_labels": setup.data.unlabelled_queries(), **metrics,
              "top_n": args.Top_N, "seconds": round(time.time() - t0, 3)}
    atomic_save_json(result, setup.out / "retrieval.json")
    print(format_metrics(result))
    print(f"written to {setup.out / 'retrieval.json'}")
    return 0


def format_metrics(result: Dict[str, object]) -> str:
    """The human-readable report of an `--eval_only` result."""
    top = result["top_n"] or "all"
    pr = result["precision_recall"]
    lines = [f"{result['checkpoint']} (epoch {result['epoch']}): {result['bits']} bits, "
             f"{result['queries']} queries, {result['gallery']} gallery codes, {result['seconds']:.1f}s",
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
