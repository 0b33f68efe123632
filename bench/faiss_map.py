"""mAP of one trained model under SPQ's distance, the squared distance, and FAISS; one JSON line.

    python bench/faiss_map.py --checkpoint CKPT --data_dir DIR [--top_k 1000] [--device cpu]

Encodes CIFAR-10 once (DIR/cifar-10-batches-py: the training set as gallery codes, the
test set as query descriptors) and measures mAP@top_k three ways: SPQ's evaluation
(sum over books of Euclidean distances), the sum of squared distances (`spq.retrieval.distances`,
distance "squared"), and the ranking of a faiss.IndexPQ holding the same codebooks and
codes (`spq.store.index.to_faiss`), which ranks by squared distance too; then how much the
rankings agree: the share of queries whose top_k lists are identical (euclidean against
squared, FAISS against squared) and the mean share of top_k items the euclidean and
squared lists have in common. Needs faiss-cpu.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from spq.data.cifar10 import load_cifar10  # noqa: E402
from spq.run.encode import encode_sets  # noqa: E402
from spq.store.index import to_faiss  # noqa: E402
from spq.run.trained import load_model  # noqa: E402
from spq.retrieval.topk import search  # noqa: E402
from spq.retrieval.metrics import average_precision, relevant  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data_dir", required=True)
    p.add_argument("--top_k", type=int, default=1000)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = p.parse_args()
    model, ckpt, _ = load_model(args.checkpoint, torch.device(args.device))
    data = load_cifar10(args.data_dir)
    t0 = time.perf_counter()
    codes, queries = encode_sets(model, data.train_images, data.query_images, ckpt["args"]["input_size"])
    encode_s = time.perf_counter() - t0
    books = model.codebooks.detach()
    figures = {"checkpoint": args.checkpoint, "epoch": ckpt["epoch"], "queries": len(queries),
               "gallery": len(codes), "top_k": args.top_k, "encode_s": round(encode_s, 1)}
    def mean_ap(ranked):                                                    # ranked: (Q, top_k)
        rel = relevant(data.query_labels, data.train_labels, ranked.cpu())
        return round(average_precision(rel).mean().item(), 6)

    ranked = {}
    for distance in ("euclidean", "squared"):
        t0 = time.perf_counter()
        ranked[distance] = torch.cat([i for _, i in search(queries, codes, books, args.top_k, distance)])
        figures[f"mAP_{distance}"] = mean_ap(ranked[distance])
        figures[f"{distance}_s"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    served = to_faiss(books.cpu(), codes.cpu())
    _, found = served.search(queries.cpu().numpy(), args.top_k)                 # (Q, top_k)
    found = torch.from_numpy(found).long()
    figures["mAP_faiss"] = mean_ap(found)
    figures["faiss_s"] = round(time.perf_counter() - t0, 2)
    e, q = ranked["euclidean"].cpu(), ranked["squared"].cpu()
    figures["same_top_k_lists_euclidean_vs_squared"] = round((e == q).all(1).float().mean().item(), 4)
    figures["mean_top_k_overlap_euclidean_vs_squared"] = round(float(sum(
        torch.isin(a, b).sum() for a, b in zip(e, q))) / e.numel(), 4)
    figures["same_top_k_lists_faiss_vs_squared"] = round((found == q).all(1).float().mean().item(), 4)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
