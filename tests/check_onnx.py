#!/usr/bin/env python3
"""Checks a `psctl export` ONNX model with the real ONNX tools, against `psctl predict`.

    python3 tests/check_onnx.py MODEL.onnx FEATURES PREDICTIONS.csv [--format idx|csv]
                                [--header] [--label-column N] [--tolerance 1e-5]

1. onnx.checker.check_model(full_check=True): the file is valid ONNX and its shapes infer.
2. onnxruntime runs it on FEATURES (raw: an IDX images file, or a CSV whose label column is dropped).
3. Its outputs are compared with PREDICTIONS.csv from `psctl predict` on the same features. For
   classifiers the largest absolute difference of the probabilities must be at most the tolerance
   and the predicted classes identical. Regression values are not bounded by 1, and float32 rounding
   grows with them, so there each difference is divided by max(1, |value|) before the comparison.

Prints the figures; exits 1 on any failure. Used by Tests/EndToEndTests/ModelToolsEndToEndTests.swift.
"""
import argparse
import csv
import gzip
import struct
import sys

import numpy as np
import onnx
import onnxruntime as ort


def read_idx_images(path):
    """Images as float32 [count, pixels] from an IDX3 or IDX2 file (plain or gzip)."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    magic, count = struct.unpack(">II", raw[:8])
    dims = magic & 0xFF
    if magic >> 8 != 0x08 or dims not in (2, 3):
        sys.exit(f"{path}: not an IDX2/IDX3 unsigned-byte images file (magic {magic:#010x})")
    shape = struct.unpack(">" + "I" * (dims - 1), raw[8:4 + 4 * dims])
    width = int(np.prod(shape))
    pixels = np.frombuffer(raw, dtype=np.uint8, count=count * width, offset=4 + 4 * dims)
    return pixels.reshape(count, width).astype(np.float32)


def read_csv_features(path, header, label_column):
    with open(path, newline="") as f:
        rows = [row for row in csv.reader(f) if any(field.strip() for field in row)]
    if header:
        rows = rows[1:]
    values = np.array(rows, dtype=np.float32)
    if label_column is not None:
        values = np.delete(values, label_column, axis=1)
    return values


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model")
    parser.add_argument("features")
    parser.add_argument("predictions")
    parser.add_argument("--format", choices=["idx", "csv"], default=None)
    parser.add_argument("--header", action="store_true")
    parser.add_argument("--label-column", type=int, default=None)
    parser.add_argument("--tolerance", type=float, default=1e-5)
    args = parser.parse_args()

    model = onnx.load(args.model)
    onnx.checker.check_model(model, full_check=True)
    opsets = {o.domain: o.version for o in model.opset_import}
    print(f"checker: ok (ir_version {model.ir_version}, opset {opsets.get('', '?')}, "
          f"nodes {' '.join(n.op_type for n in model.graph.node)})")

    fmt = args.format or ("csv" if args.features.lower().endswith((".csv", ".csv.gz")) else "idx")
    x = read_idx_images(args.features) if fmt == "idx" else \
        read_csv_features(args.features, args.header, args.label_column)

    session = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    (output,) = session.run(["output"], {"input": x})
    print(f"onnxruntime {ort.__version__}: input {list(x.shape)} -> output {list(output.shape)}")

    with open(args.predictions, newline="") as f:
        reader = csv.reader(f)
        columns = next(reader)
        table = np.array(list(reader), dtype=np.float64)
    if table.shape[0] != x.shape[0]:
        sys.exit(f"FAIL: {args.predictions} has {table.shape[0]} rows, the features {x.shape[0]}")

    failures = []
    if columns[0] == "class":
        probabilities = table[:, 1:]
        if output.shape[1] == 1:
            # A binary classifier: psctl prints p0 = 1 - p and p1 = p; the graph outputs p.
            probabilities = probabilities[:, 1:]
            onnx_classes = (output[:, 0] >= 0.5).astype(np.int64)
        else:
            onnx_classes = output.argmax(axis=1)
        psctl_classes = table[:, 0].astype(np.int64)
        mismatched = int((onnx_classes != psctl_classes).sum())
        print(f"predicted classes: {x.shape[0] - mismatched}/{x.shape[0]} identical")
        if mismatched:
            failures.append(f"{mismatched} predicted classes differ")
    else:
        probabilities = table
    if probabilities.shape != output.shape:
        sys.exit(f"FAIL: {args.predictions} has values {list(probabilities.shape)}, onnxruntime {list(output.shape)}")
    reference = output.astype(np.float64)
    difference = np.abs(probabilities - reference)
    diff = float(difference.max())
    if columns[0] == "class":
        print(f"max_abs_diff {diff:.3g} (tolerance {args.tolerance:g})")
    else:
        scaled = float((difference / np.maximum(1.0, np.abs(reference))).max())
        print(f"max_abs_diff {diff:.3g}, max |diff|/max(1,|value|) {scaled:.3g} (tolerance {args.tolerance:g}), "
              f"values in [{reference.min():.3g}, {reference.max():.3g}]")
        diff = scaled
    if not diff <= args.tolerance:
        failures.append(f"difference {diff:.3g} exceeds {args.tolerance:g}")

    if failures:
        print("FAIL: " + "; ".join(failures))
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
