#!/usr/bin/env python3
"""PyTorch's answer to the cluster, for `make bench ARGS=--torch` (P2.b512.ddp, P3.b512.ddp).

The bench job's model and training (bench/mnist-bench.yaml): 784-256-128-10, ReLU, no dropout,
softmax cross-entropy as a mean over the batch, Adam with learning rate 1e-3, on the same 54,000
training images (the project's validation split of 10%, via bench/numpy_mlp.py) in the same
per-epoch order. One thread per process (torch.set_num_threads(1) and the OMP/MKL/OpenBLAS
variables, which the bench sets).

  --world 1             one process, batch --batch
  --world 2 --rank R    DistributedDataParallel, gloo on 127.0.0.1:--port: each global batch of
                        --batch rows is split in two halves, rank R takes half R; DDP averages the
                        gradients, so each step is the global batch's mean gradient.

Prints one JSON object per process: samples_per_second (the global samples of the timed training
steps ÷ this process's wall seconds over them), train_seconds, train_cpu_seconds (this process's
CPU time over the same steps, every thread, gloo's included), samples (global), final_loss,
torch version and threads.
"""
import sys
import time

T0 = time.perf_counter()
# bench/ holds profile.py, which would shadow the standard library's profile module that torch imports
# (through cProfile): take this script's folder off the path and load numpy_mlp.py by its file name.
HERE = sys.path.pop(0)

import argparse
import importlib.util
import json
import os

import numpy as np
import torch
import torch.distributed as dist

_spec = importlib.util.spec_from_file_location("numpy_mlp", os.path.join(HERE, "numpy_mlp.py"))
numpy_mlp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(numpy_mlp)
STREAM_EPOCH, STREAM_SPLIT, fisher_yates, read_idx = (numpy_mlp.STREAM_EPOCH, numpy_mlp.STREAM_SPLIT,
                                                      numpy_mlp.fisher_yates, numpy_mlp.read_idx)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="data/mnist")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=512, help="global batch size")
    ap.add_argument("--lr", type=float, default=0.001)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--validation-split", type=float, default=0.1)
    ap.add_argument("--world", type=int, default=1)
    ap.add_argument("--rank", type=int, default=0)
    ap.add_argument("--port", type=int, default=29500)
    args = ap.parse_args()
    if args.world not in (1, 2) or not 0 <= args.rank < args.world:
        sys.exit(f"torch_ddp.py: --world must be 1 or 2 and --rank below it, got world {args.world} rank {args.rank}")
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    torch.manual_seed(args.seed)

    x_all = read_idx(f"{args.data}/train-images-idx3-ubyte.gz").astype(np.float32) / np.float32(255)
    y_all = read_idx(f"{args.data}/train-labels-idx1-ubyte.gz").astype(np.int64)
    n_all = len(y_all)
    n_val = int(round(n_all * args.validation_split))
    train_idx = np.sort(fisher_yates(args.seed, (STREAM_SPLIT << 24), n_all)[n_val:]) if n_val else np.arange(n_all)
    x = torch.from_numpy(np.ascontiguousarray(x_all[train_idx]))
    y = torch.from_numpy(np.ascontiguousarray(y_all[train_idx]))
    n = len(y)

    model = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 128),
                                torch.nn.ReLU(), torch.nn.Linear(128, 10))
    if args.world > 1:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{args.port}", rank=args.rank,
                                world_size=args.world)
        # DDP broadcasts rank 0's initial weights, so both start alike.
        model = torch.nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    orders = [torch.from_numpy(fisher_yates(args.seed, (STREAM_EPOCH << 24) | e, n)) for e in range(args.epochs)]
    if args.world > 1:
        dist.barrier()

    start, cpu_start = time.perf_counter(), time.process_time()
    samples = 0
    loss = None
    for order in orders:
        for s in range(0, n, args.batch):
            idx = order[s:s + args.batch]
            half = (len(idx) + args.world - 1) // args.world
            mine = idx[args.rank * half:(args.rank + 1) * half]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[mine]), y[mine])
            loss.backward()
            optimizer.step()
            samples += len(idx)
    train_seconds = time.perf_counter() - start
    train_cpu = time.process_time() - cpu_start
    if args.world > 1:
        dist.destroy_process_group()
    print(json.dumps({"samples_per_second": samples / train_seconds, "train_seconds": train_seconds,
                      "train_cpu_seconds": train_cpu, "samples": samples, "final_loss": loss.item(),
                      "world": args.world, "rank": args.rank, "batch": args.batch, "torch": torch.__version__,
                      "threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
                      "wall_seconds": time.perf_counter() - T0}))


if __name__ == "__main__":
    main()
