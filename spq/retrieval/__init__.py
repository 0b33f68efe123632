"""Retrieval over product-quantization codes: ADC (and SDC) distances, the exact top-k
search engine, and the metrics of its rankings (mAP, precision@k, precision-recall)."""
