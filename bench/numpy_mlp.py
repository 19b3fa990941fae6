#!/usr/bin/env python3
"""The reference trainer for benchmarks: the same model, batches and optimizer as `psctl train --local`,
written in numpy.

It reproduces the project's sample order exactly (Philox4x32-10 keyed by the seed, the same
validation split and epoch permutations), the He/Glorot-uniform bounds, softmax cross-entropy as a
mean over the batch, and torch.optim's SGD and Adam. Only the training steps are timed (forward,
backward, update), as in `psctl`'s samples_per_second.

Prints one JSON object: samples_per_second, test_accuracy, seconds_to_target (seconds of training
steps until the test accuracy first reaches --target, checked after each epoch, or null),
wall_seconds_to_target (wall seconds from the interpreter's start to that check: data loading, the
split and shuffles, training and the per-epoch evaluations, as a cluster job's wall clock from
submit includes them), epochs_run. With --target, training stops at the epoch that reaches it.
"""
import time

T0 = time.perf_counter()  # before numpy's import: wall_seconds_to_target counts everything

import argparse
import gzip
import json
import struct

import numpy as np

M0, M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
W0, W1 = 0x9E3779B9, 0xBB67AE85
MASK32 = np.uint64(0xFFFFFFFF)
STREAM_EPOCH, STREAM_SPLIT = 3, 4


def philox(key, c0, c1, c2=0, c3=0):
    """Philox4x32-10 over arrays of counters; returns the first output word of each block."""
    c0 = np.asarray(c0, dtype=np.uint64)
    n = c0.shape
    c1 = np.broadcast_to(np.uint64(c1), n).copy()
    c2 = np.broadcast_to(np.uint64(c2), n).copy()
    c3 = np.broadcast_to(np.uint64(c3), n).copy()
    k0, k1 = key & 0xFFFFFFFF, (key >> 32) & 0xFFFFFFFF
    for _ in range(10):
        p0 = M0 * c0
        p1 = M1 * c2
        c0, c1, c2, c3 = ((p1 >> np.uint64(32)) ^ c1 ^ np.uint64(k0),
                          p1 & MASK32,
                          (p0 >> np.uint64(32)) ^ c3 ^ np.uint64(k1),
                          p0 & MASK32)
        k0 = (k0 + W0) & 0xFFFFFFFF
        k1 = (k1 + W1) & 0xFFFFFFFF
    return c0


def fisher_yates(seed, stream_word, count):
    """The project's permutation: for i from count-1 down to 1, swap i with below(i+1, word_i)."""
    words = philox(seed, np.arange(count, dtype=np.uint64), stream_word)
    order = np.arange(count, dtype=np.int64)
    bounds = np.arange(count, dtype=np.uint64) + np.uint64(1)
    js = ((words * bounds) >> np.uint64(32)).astype(np.int64)
    for i in range(count - 1, 0, -1):
        j = js[i]
        order[i], order[j] = order[j], order[i]
    return order


def read_idx(path):
    with gzip.open(path) if path.endswith(".gz") else open(path, "rb") as f:
        data = f.read()
    magic, count = struct.unpack(">II", data[:8])
    if magic == 0x803:
        rows, cols = struct.unpack(">II", data[8:16])
        return np.frombuffer(data, np.uint8, offset=16).reshape(count, rows * cols)
    return np.frombuffer(data, np.uint8, offset=8)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="data/mnist")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--optimizer", choices=["sgd", "adam"], default="adam")
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--validation-split", type=float, default=0.1)
    ap.add_argument("--layers", default="256,128")
    ap.add_argument("--target", type=float, default=None)
    args = ap.parse_args()
    lr = args.lr if args.lr is not None else (0.001 if args.optimizer == "adam" else 0.1)

    x_all = read_idx(f"{args.data}/train-images-idx3-ubyte.gz").astype(np.float32) / np.float32(255)
    y_all = read_idx(f"{args.data}/train-labels-idx1-ubyte.gz").astype(np.int64)
    x_test = read_idx(f"{args.data}/t10k-images-idx3-ubyte.gz").astype(np.float32) / np.float32(255)
    y_test = read_idx(f"{args.data}/t10k-labels-idx1-ubyte.gz").astype(np.int64)

    n_all = len(y_all)
    n_val = int(round(n_all * args.validation_split))
    if n_val:
        split = fisher_yates(args.seed, (STREAM_SPLIT << 24), n_all)
        train_idx = np.sort(split[n_val:])
    else:
        train_idx = np.arange(n_all)
    x, y = x_all[train_idx], y_all[train_idx]
    n = len(y)

    sizes = [784] + [int(u) for u in args.layers.split(",")] + [10]
    rng = np.random.default_rng(args.seed)
    params = []
    for i, (fan_in, units) in enumerate(zip(sizes[:-1], sizes[1:])):
        relu = i < len(sizes) - 2
        bound = np.sqrt(6.0 / fan_in) if relu else np.sqrt(6.0 / (fan_in + units))
        params.append(rng.uniform(-bound, bound, (units, fan_in)).astype(np.float32))
        params.append(np.zeros(units, np.float32))
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    b1, b2, eps = 0.9, 0.999, 1e-8
    t = 0

    def forward(xb):
        hs = [xb]
        h = xb
        for i in range(0, len(params), 2):
            z = h @ params[i].T + params[i + 1]
            h = np.maximum(z, 0) if i < len(params) - 2 else z
            hs.append(h)
        return hs

    def accuracy(xs, ys):
        return float((forward(xs)[-1].argmax(1) == ys).mean())

    train_seconds = 0.0
    samples = 0
    seconds_to_target = None
    wall_seconds_to_target = None
    test_acc = None
    epochs_run = 0
    for epoch in range(args.epochs):
        order = fisher_yates(args.seed, (STREAM_EPOCH << 24) | epoch, n)
        start = time.perf_counter()
        for s in range(0, n, args.batch):
            idx = order[s:s + args.batch]
            xb, yb = x[idx], y[idx]
            bsz = len(idx)
            hs = forward(xb)
            logits = hs[-1]
            e = np.exp(logits - logits.max(1, keepdims=True))
            p = e / e.sum(1, keepdims=True)
            p[np.arange(bsz), yb] -= 1
            dz = p / np.float32(bsz)
            grads = [None] * len(params)
            for i in range(len(params) - 2, -1, -2):
                h_in = hs[i // 2]
                grads[i] = dz.T @ h_in
                grads[i + 1] = dz.sum(0)
                if i > 0:
                    dz = (dz @ params[i]) * (h_in > 0)
            t += 1
            if args.optimizer == "sgd":
                for p_, g in zip(params, grads):
                    p_ -= np.float32(lr) * g
            else:
                step = np.float32(lr / (1 - b1 ** t))
                c2 = np.float32(np.sqrt(1 - b2 ** t))
                for p_, g, m_, v_ in zip(params, grads, m, v):
                    m_ *= np.float32(b1)
                    m_ += np.float32(1 - b1) * g
                    v_ *= np.float32(b2)
                    v_ += np.float32(1 - b2) * g * g
                    p_ -= step * m_ / (np.sqrt(v_) / c2 + np.float32(eps))
            samples += bsz
        train_seconds += time.perf_counter() - start
        test_acc = accuracy(x_test, y_test)
        epochs_run = epoch + 1
        if args.target is not None and seconds_to_target is None and test_acc >= args.target:
            seconds_to_target = train_seconds
            wall_seconds_to_target = time.perf_counter() - T0
            break
    print(json.dumps({"samples_per_second": samples / train_seconds, "test_accuracy": test_acc,
                      "seconds_to_target": seconds_to_target, "wall_seconds_to_target": wall_seconds_to_target,
                      "epochs_run": epochs_run}))


if __name__ == "__main__":
    main()
