#!/usr/bin/env python3
"""`make bench`: the project's performance figures, each a ratio measured within one run.

Shared 2-core machines drift by up to 1.6x between runs (docs/PERFORMANCE.md), so every figure
compares two programs run back to back inside the same repetition, and the compared programs
alternate within each repetition so drift hits both. Each figure is reported as the min and the
median over --runs repetitions (>= 3). Rates are measured on 1 epoch.

  P1   psctl train --local samples/s / numpy (bench/numpy_mlp.py), same model, batches, Adam
  P1b  psctl train --local samples/s / the GEMM bound (ps-bench gemm: cblas_sgemm on the step's shapes)
  P2   cluster (1 server + 2 workers, 127.0.0.1) samples/s / train --local, batch 128 and 512
  P3   CPU seconds per sample, cluster (server + workers) / train --local (P3.steady: epochs 2-3 only)
  P4   memcpy time / (encodeFrame + Envelope(payload:)) time for a pushGradient of 1M floats
  P5   wall seconds to 97.5% test accuracy, 2-worker cluster / numpy on one core
  ref  square sgemm 1024 GFLOP/s, one thread
  kernels  the OpenBLAS kernel choice: for Prescott (the fallback OpenBLAS 0.3.21 takes on CPUs it does
           not know), Haswell and the kernel the start-up choice uses here (ps-bench signature's
           cpu_best_kernel), each one this CPU can run: sgemm 1024 GFLOP/s (kernel.<name>.sgemm) and P1
           (kernel.<name>.P1), with OPENBLAS_CORETYPE=<name> set for psctl and ps-bench only; numpy keeps
           the machine's OPENBLAS_CORETYPE, so each P1 is that kernel against the same numpy. The raw
           results record the kernel each child actually ran.
  scaling  784-1024-1024-10 (local / numpy; 2-worker cluster / local at batch 512, the model that is
           pushed in two ranges); 1, 2, 4 workers at batch 512
  durability  D1: 2-worker cluster samples/s with default checkpointing (every 30 s and at each epoch's
           end) / with none, 3 epochs, alternating; D2: seconds from launching a new ps-server after a
           kill -9 until it applies a step again (median of 5 kills of one 10-epoch run, 1 to 3 s apart,
           workers reconnecting by themselves); D3: steps redone per kill; D4: the final weights equal
           train --local's
  tls      A1: 2-worker cluster samples/s at batch 512 with the shared token (every program reads
           $PS_AUTH_TOKEN_FILE) / without (target >= 0.98); T1: the same with mutual TLS (deploy/local/cluster.sh --tls, certificates
           from deploy/tls/make-certs.sh) / without, 1 epoch, alternating which goes first; T1.cpu: the cluster's
           CPU seconds, TLS / plaintext, with each process's share in the raw results
  straggler  one worker slowed to a third of its speed by the bench (SIGSTOP/SIGCONT: it runs the first
           20 ms of every 60 ms), on the P5 job (bench/mnist-target.yaml, 6 epochs) with 2 and 3 workers,
           for sync without backup chunks, sync with them (the default), delayed d=1, ssp s=2 and async,
           each next to the same job without the straggler: samples/s, seconds from submit to the first
           epoch whose test accuracy >= 97.5% (the server's TensorBoard event file), the ratios, whether
           sync's bits held (target: sync with backup chunks >= 0.8 of its rate without the straggler).
           A mode this build refuses, or runs as sync (weights equal sync's), shows "n/a: why".
           --straggler-runs (default 1), --straggler-epochs, --straggler-period-ms
  P2/P3 delayed  P2.b512.delayed, P3.b512.delayed, P3.steady.b512.delayed: the same 2-worker jobs at batch
           512 with training.consistency {mode: delayed, staleness: 1} (targets P2 >= 1.3, P3 <= 1.4); n/a
           where this build refuses the spec or runs it as sync
  P2/P3 ddp  only with --torch: PyTorch DistributedDataParallel (bench/torch_ddp.py: gloo, 2 processes of 1
           thread, global batch 512, the same model, Adam 1e-3, the same 54,000 images) / the same in one
           process of 1 thread: P2.b512.ddp (samples/s), P3.b512.ddp (CPU of the training steps),
           P3.b512.ddp.whole (whole processes). --torch installs torch into .venv-bench with pip once
  compare  only with --baseline DIR (another build's psctl, ps-server, ps-worker = "old"; "new" is
           .build/release, or --candidate DIR): P1's and P2's measurements (train --local at batch 128
           and 512, 2-worker cluster at 128 and 512) with both builds back to back, old first in even
           repetitions and new first in odd ones (ABBA), numpy once per repetition. Rows: new / old of
           each rate (cmp.*), and P1 and P2 of each build (P1.old, P1.new, P2.b128.old, ...). Alone:
           --baseline DIR --skip local,cluster,wide,target,kernels

Prints a table and writes everything (environment, every raw measurement, the table) as JSON. The
environment includes `ps-bench signature` (under "compute": the compute signature, the BLAS kernel
our binaries run by default and why), also shown in the table's header.
"""
import argparse
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, ".build/release")
PSCTL = os.path.join(BIN, "psctl")
PSBENCH = os.path.join(BIN, "ps-bench")
CLUSTER = os.path.join(ROOT, "deploy/local/cluster.sh")
MAKE_CERTS = os.path.join(ROOT, "deploy/tls/make-certs.sh")
SPEC = "bench/mnist-bench.yaml"
TARGET_SPEC = "bench/mnist-target.yaml"
TICK = os.sysconf("SC_CLK_TCK")
# One BLAS thread everywhere (our binaries set it themselves; numpy obeys the variable).
# OPENBLAS_CORETYPE is left as the machine sets it (only the kernels section sets it, for our binaries).
ENV = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
# What /proc/cpuinfo must list for OPENBLAS_CORETYPE=<kernel> to run here (a kernel not listed has
# no known needs): forcing a kernel the CPU cannot run would end in SIGILL, not in a figure.
AVX512 = {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"}
KERNEL_NEEDS = {"Prescott": {"pni"}, "Haswell": {"avx2", "fma"}, "SkylakeX": AVX512,
                "Cooperlake": AVX512 | {"avx512_bf16"}}
WIDE = "[{units: 1024, activation: relu}, {units: 1024, activation: relu}, {units: 10, activation: softmax}]"


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def run_json(cmd, timeout=600, env=ENV):
    """Runs cmd, returns (last stdout line as JSON, wall seconds). The JSON gets "_blas_kernel" where
    the child's stderr names the kernel it ran ("psctl: BLAS kernel X (reason); ..."): the start-up
    choice may restart the program with another kernel than the environment asked for."""
    start = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = p.communicate(timeout=timeout)
    wall = time.perf_counter() - start
    # communicate() reaped the child; its rusage is in RUSAGE_CHILDREN only as a running total, so we
    # take the difference around each run instead (runs are sequential).
    if p.returncode != 0:
        sys.exit(f"bench: {' '.join(cmd)} failed ({p.returncode}):\n{err[-3000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    kernel = re.search(r"^\S+: (?:warning: )?BLAS kernel (\S+) \(", err, re.M)
    if kernel:
        result["_blas_kernel"] = kernel.group(1)
    return result, wall


def children_cpu():
    r = os.times()
    return r.children_user + r.children_system


def measured(cmd, env=ENV):
    before = children_cpu()
    result, wall = run_json(cmd, env=env)
    result["_cpu_seconds"] = children_cpu() - before
    result["_wall_seconds"] = wall
    return result


def tls_args(certs, role):
    """The --tls-* options of `role` (server, worker, psctl) for certificates make-certs.sh made in certs."""
    if not certs:
        return []
    return ["--tls-cert", f"{certs}/{role}.pem", "--tls-key", f"{certs}/{role}-key.pem", "--tls-ca", f"{certs}/ca.pem"]


class PsctlFailed(RuntimeError):
    """A psctl command that exited non-zero; message is psctl's own last line on stderr (a refused
    spec names the field, a failed job its reason), which the sections that try modes this build may
    not run yet print as "n/a: <message>"."""

    def __init__(self, cmd, returncode, stderr):
        lines = [line for line in stderr.strip().splitlines() if line.strip()]
        self.message = re.sub(r"^psctl: (error: )?", "", lines[-1]) if lines else f"exit status {returncode}"
        super().__init__(f"{' '.join(cmd)} failed ({returncode}): {stderr.strip()}")


def psctl(*args, server=None, check=True, bin=BIN, tls=None, token=None):
    cmd = [os.path.join(bin, "psctl"), *args] + (["--server", server] if server else []) + tls_args(tls, "psctl")
    env = dict(ENV, PS_AUTH_TOKEN_FILE=token) if token else ENV
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if check and out.returncode != 0:
        raise PsctlFailed(cmd, out.returncode, out.stderr)
    return out.stdout


def proc_cpu(pid):
    """utime + stime of a live process, in seconds (fields 14 and 15 of /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


class Cluster:
    """deploy/local/cluster.sh start/stop, with the processes' CPU time read before they stop.
    The server and workers are the binaries in bin (passed as $PS_BIN); with tls (a folder of
    make-certs.sh certificates) the cluster runs mutual TLS (cluster.sh --tls)."""
    port = 7300

    def __init__(self, workers, bin=BIN, tls=None, token=None):
        Cluster.port += 1
        self.workers = workers
        self.server = f"127.0.0.1:{Cluster.port}"
        self.dir = os.path.join(ROOT, "runs/bench/cluster")
        # With token (a token file), every program reads it from $PS_AUTH_TOKEN_FILE.
        self.env = dict(ENV, PS_BIN=bin, **({"PS_AUTH_TOKEN_FILE": token} if token else {}))
        self.tls = tls

    def __enter__(self):
        subprocess.run([CLUSTER, "start", "--workers", str(self.workers), "--port", str(Cluster.port),
                        "--dir", self.dir] + (["--tls", self.tls] if self.tls else []),
                       cwd=ROOT, env=self.env, check=True, stdout=subprocess.DEVNULL)
        pid_dir = os.path.join(self.dir, "pids")
        self.pids = {f[:-4]: int(open(os.path.join(pid_dir, f)).read()) for f in os.listdir(pid_dir)}
        return self

    def cpu(self):
        return {name: proc_cpu(pid) for name, pid in self.pids.items()}

    def __exit__(self, *exc):
        subprocess.run([CLUSTER, "stop", "--dir", self.dir], cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL)


def cluster_epoch(workers, batch, epochs=1, overrides=(), bin=BIN, tls=None, token=None):
    """One job on a fresh cluster: samples/s as `psctl wait --json` reports it, and the CPU seconds
    all cluster processes spent from just before the submit to just before they are stopped.
    Server, workers and psctl are the binaries in bin; tls: mutual TLS with these certificates."""
    with Cluster(workers, bin, tls, token) as c:
        before = c.cpu()
        start = time.perf_counter()
        extra = [a for o in overrides for a in ("--set", o)]
        job = psctl("submit", SPEC, "--set", f"training.batch_size={batch}", "--set", f"training.epochs={epochs}",
                    *extra, server=c.server, bin=bin, tls=tls, token=token).strip()
        result = json.loads(psctl("wait", job, "--json", server=c.server, bin=bin, tls=tls, token=token).strip().splitlines()[-1])
        wall = time.perf_counter() - start
        after = c.cpu()
    cpu = {k: after[k] - before[k] for k in after}
    result["_cpu_seconds"] = sum(cpu.values())
    result["_cpu_by_process"] = cpu
    result["_wall_seconds"] = wall
    return result


def cluster_to_target(workers, target, poll_log=0.02, poll_status=0.5, limit=300):
    """Wall seconds from submit until the job's validation (= test set) accuracy reaches target.
    Watched two ways: `psctl status --json` every poll_status seconds (what a user sees), and the
    server's 'epoch done' log line (read every poll_log seconds, no extra process). The earlier
    sighting is the figure; both are kept."""
    with Cluster(workers) as c:
        log_path = os.path.join(c.dir, "logs/server.log")
        offset = os.path.getsize(log_path)
        start = time.perf_counter()
        job = psctl("submit", TARGET_SPEC, server=c.server).strip()
        seen_log = seen_status = None
        epochs = None
        next_status = start
        while time.perf_counter() - start < limit:
            now = time.perf_counter()
            with open(log_path) as f:
                f.seek(offset)
                for line in f.read().splitlines():
                    m = re.search(r"epoch=(\d+).*val_accuracy=([0-9.]+).*epoch done", line)
                    if m and seen_log is None and float(m.group(2)) >= target:
                        seen_log, epochs = now - start, int(m.group(1))
            if now >= next_status:
                jobs = json.loads(psctl("status", job, "--json", server=c.server))["jobs"]
                j = jobs[0]
                if seen_status is None and (j.get("val_accuracy") or 0) >= target:
                    seen_status = time.perf_counter() - start
                    epochs = epochs or j.get("epoch")
                if j["state"] not in ("submitted", "waiting_for_workers", "running"):
                    break
                next_status = now + poll_status
            if seen_log is not None and seen_status is not None:
                break
            time.sleep(poll_log)
        psctl("cancel", job, server=c.server, check=False)
    seen = [t for t in (seen_log, seen_status) if t is not None]
    return {"seconds_to_target": min(seen) if seen else None, "seen_in_log": seen_log,
            "seen_in_status": seen_status, "epoch": epochs}


NO_CHECKPOINTS = ("checkpoint.every_seconds=0", "checkpoint.at_epoch_end=false")

# The consistency modes the straggler section and the delayed P2/P3 rows ask for, as a user writes them
# (training.consistency's map form, or the shorthand where the default staleness is the one wanted).
DELAYED1 = "training.consistency={mode: delayed, staleness: 1}"
STRAGGLER_MODES = (
    ("sync_nobackup", "sync, no backup chunks", ("training.backup_chunks=false",)),
    ("sync", "sync, backup chunks (default)", ()),
    ("delayed", "delayed d=1", (DELAYED1,)),
    ("ssp", "ssp s=2", ("training.consistency={mode: ssp, staleness: 2}",)),
    ("async", "async", ("training.consistency=async",)),
)
SYNC_MODES = ("sync_nobackup", "sync")


class DutyCycle(threading.Thread):
    """The straggler: the harness (never the product) lets process pid run run_ms of every period_ms
    and holds it with SIGSTOP for the rest, SIGCONT at the start of each period. A stopped process
    gets no CPU at all, so it advances at run_ms / period_ms of whatever speed it would have had at
    that moment (a CPU quota would cap it at a fraction of one core instead, which on 2 busy cores is a
    milder and load-dependent slowdown). Every thread of the worker stops, its network included, as on a
    slow machine. `running_fraction` is what it achieved: the wall time between each SIGCONT and the
    following SIGSTOP over the whole time the cycle ran (the harness's own wake-ups decide it)."""

    def __init__(self, pid, run_ms, period_ms):
        super().__init__(daemon=True)
        self.pid, self.run_s, self.period_s = pid, run_ms / 1000, period_ms / 1000
        self.done = threading.Event()
        self.running = 0.0
        self.total = 0.0

    def run(self):
        begin = time.perf_counter()
        next_period = begin
        try:
            while True:
                os.kill(self.pid, signal.SIGCONT)
                resumed = time.perf_counter()
                ending = self.done.wait(max(0.0, next_period + self.run_s - resumed))
                if not ending:
                    os.kill(self.pid, signal.SIGSTOP)
                self.running += time.perf_counter() - resumed
                if ending:
                    break
                next_period += self.period_s
                if self.done.wait(max(0.0, next_period - time.perf_counter())):
                    break
        except ProcessLookupError:
            return  # the worker is gone: the job will say so
        self.total = time.perf_counter() - begin
        os.kill(self.pid, signal.SIGCONT)

    def stop(self):
        self.done.set()
        self.join()
        return self.running / self.total if self.total else None


def read_scalars(folder, tag):
    """(wall_time, step, value) of every `tag` scalar in the TensorBoard event files of folder, in file
    order. The files are TFRecords (u64 length, u32 crc, an Event, u32 crc); an Event is
    wall_time = 1 (double), step = 2 (varint), summary = 5 { value = 1 { tag = 1, simple_value = 2 } }
    (see Sources/PSEventFile/Event.swift)."""

    def fields(buf):
        i = 0
        while i < len(buf):
            key, i = varint(buf, i)
            number, wire = key >> 3, key & 7
            if wire == 0:
                value, i = varint(buf, i)
            elif wire == 1:
                value, i = buf[i:i + 8], i + 8
            elif wire == 2:
                n, i = varint(buf, i)
                value, i = buf[i:i + n], i + n
            elif wire == 5:
                value, i = buf[i:i + 4], i + 4
            else:
                raise ValueError(f"bench: {folder}: wire type {wire} in an event")
            yield number, value

    def varint(buf, i):
        out = shift = 0
        while True:
            b = buf[i]
            i += 1
            out |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                return out, i

    out = []
    names = sorted(n for n in os.listdir(folder) if "tfevents" in n) if os.path.isdir(folder) else []
    for name in names:
        with open(os.path.join(folder, name), "rb") as f:
            data = f.read()
        i = 0
        while i + 12 <= len(data):
            (length,) = struct.unpack_from("<Q", data, i)
            event = data[i + 12:i + 12 + length]
            i += 12 + length + 4
            wall, step, summary = None, 0, None
            for number, value in fields(event):
                if number == 1:
                    (wall,) = struct.unpack("<d", value)
                elif number == 2:
                    step = value
                elif number == 5:
                    summary = value
            for number, value in fields(summary or b""):
                if number != 1:
                    continue
                item = dict(fields(value))
                if item.get(1, b"").decode() == tag and 2 in item:
                    out.append((wall, step, struct.unpack("<f", item[2])[0]))
    return out


def straggler_job(workers, overrides, slow, epochs, run_ms, period_ms, target=0.975):
    """The P5 job (bench/mnist-target.yaml: all 60,000 training images, validated on the MNIST test set
    after every epoch) for `epochs` epochs on a fresh cluster of `workers`, worker-1 slowed by a
    DutyCycle when slow. Returns psctl wait's result (samples/s over the job's training steps,
    weights_sha256) with seconds_to_target: wall seconds from just before `psctl submit` until the
    wall time the server stamped on the first `validation/accuracy` point >= target in the job's
    TensorBoard event file (its epoch's validation done), None if no epoch reached it. Raises
    PsctlFailed when the spec is refused or the job fails."""
    shutil.rmtree(os.path.join(ROOT, "runs/bench/cluster/data"), ignore_errors=True)
    with Cluster(workers) as c:
        cycle = DutyCycle(c.pids["worker-1"], run_ms, period_ms) if slow else None
        before = c.cpu()
        if cycle:
            cycle.start()
        try:
            submitted = time.time()
            start = time.perf_counter()
            extra = [a for o in overrides for a in ("--set", o)]
            job = psctl("submit", TARGET_SPEC, "--set", f"training.epochs={epochs}", *extra, server=c.server).strip()
            result = json.loads(psctl("wait", job, "--json", server=c.server).strip().splitlines()[-1])
            result["_wall_seconds"] = time.perf_counter() - start
        finally:
            result_duty = cycle.stop() if cycle else None
        after = c.cpu()
        with open(os.path.join(c.dir, "logs/server.log")) as f:
            backup_lines = sum(1 for line in f if "backup" in line.lower())
    points = [p for p in read_scalars(os.path.join(c.dir, "data/jobs", job, "tensorboard"), "validation/accuracy")
              if p[0] >= submitted - 1]
    reached = next(((wall, step) for wall, step, value in points if value >= target), None)
    result["seconds_to_target"] = reached[0] - submitted if reached else None
    result["epoch_at_target"] = 1 + [p[1] for p in points].index(reached[1]) if reached else None
    result["val_accuracy_by_epoch"] = [round(p[2], 4) for p in points]
    result["_cpu_seconds"] = sum(after[k] - before[k] for k in after)
    result["straggler_running_fraction"] = result_duty
    result["server_log_lines_with_backup"] = backup_lines
    return result


def straggler(runs, epochs, run_ms, period_ms, worker_counts=(2, 3), t_start=None):
    """The straggler section: for each worker count and mode of STRAGGLER_MODES, the P5 job without and
    with worker-1 slowed to run_ms/period_ms, back to back (which goes first alternates between
    repetitions). A mode whose spec this build refuses, or whose job fails, is n/a with psctl's
    message; a delayed/ssp/async job whose weights equal sync's bit for bit ran as sync (a server that
    does not run the mode yet), also n/a. Sync's bits: `train --local` on the same spec."""
    local = measured([PSCTL, "train", "--local", TARGET_SPEC, "--json", "--output", "/dev/null",
                      "--set", f"training.epochs={epochs}"])
    sync_sha = local["weights_sha256"]
    na, checked, reps = {}, set(), []
    jobs = len(worker_counts) * len(STRAGGLER_MODES) * 2 * runs
    log(f"bench: straggler: worker-1 runs {run_ms} ms of every {period_ms} ms (SIGSTOP/SIGCONT); the P5 job, "
        f"{epochs} epochs; up to {jobs} jobs ({len(worker_counts)} worker counts x {len(STRAGGLER_MODES)} modes x "
        f"with/without straggler x {runs} run(s)), about {jobs * 14 // 60 + 1} min on 2 cores when every mode runs, "
        f"less for modes this build refuses")
    for r in range(runs):
        rep = {}
        for w in worker_counts:
            for i, (key, label, overrides) in enumerate(STRAGGLER_MODES):
                if key in na:
                    continue
                # A mode not yet seen to run goes without the straggler first: a refusal, or a job that
                # ran as sync, then costs no slowed job.
                order = [False, True] if key not in checked or (r + i) % 2 == 0 else [True, False]
                pair = {}
                for slow in order:
                    try:
                        res = straggler_job(w, overrides, slow, epochs, run_ms, period_ms)
                    except PsctlFailed as e:
                        na[key] = e.message
                        break
                    if key not in SYNC_MODES and res.get("weights_sha256") == sync_sha:
                        na[key] = ("ran as sync: its weights equal sync's bit for bit (this server does not run "
                                   "the mode yet)")
                        break
                    checked.add(key)
                    pair["straggler" if slow else "none"] = res
                if key in na:
                    log(f"bench: straggler: {label}: n/a: {na[key]}")
                    continue
                rep[f"w{w}.{key}"] = pair
                fmt_t = lambda v: "-" if v["seconds_to_target"] is None else f"{v['seconds_to_target']:.1f} s"
                took = (time.perf_counter() - t_start) if t_start else 0
                log(f"[{took:5.0f}s] run {r + 1}/{runs} straggler: {w} workers, {label}: "
                    f"{pair['straggler']['samples_per_second']:,.0f} samples/s with the straggler "
                    f"(running {pair['straggler']['straggler_running_fraction']:.3f} of the time), "
                    f"{pair['none']['samples_per_second']:,.0f} without; 97.5% after {fmt_t(pair['straggler'])} / "
                    f"{fmt_t(pair['none'])}")
        reps.append(rep)
    return {"reps": reps, "na": na, "local_weights_sha256": sync_sha, "epochs": epochs, "run_ms": run_ms,
            "period_ms": period_ms, "worker_counts": list(worker_counts)}


def restarts(kills=5, seed=12, workers=2, bin=BIN):
    """The MNIST bench job (10 epochs, default checkpointing) on a server that is killed with SIGKILL
    `kills` times, each 1 to 3 s (drawn from `seed`) after the previous incarnation applied its first
    step, and restarted on the same data directory and port. For
    each kill: the steps the job had applied (workers frozen, then `psctl status`), the step of the
    checkpoint it resumed from, and the wall seconds from launching the new ps-server until its log
    says the first step was applied again (workers reconnect by themselves). The final weights are
    compared with train --local's."""
    rng = random.Random(seed)
    Cluster.port += 1
    server = f"127.0.0.1:{Cluster.port}"
    base = os.path.join(ROOT, "runs/bench/restarts")
    subprocess.run(["rm", "-rf", base], check=True)
    os.makedirs(os.path.join(base, "logs"))
    data = os.path.join(base, "data")

    def start_server(n):
        path = os.path.join(base, f"logs/server-{n}.log")
        p = subprocess.Popen([os.path.join(bin, "ps-server"), "--listen", server, "--data-dir", data],
                             cwd=ROOT, env=ENV, stdout=open(path, "w"), stderr=subprocess.STDOUT)
        return p, path

    def wait_log(path, pattern, limit=60):
        deadline = time.perf_counter() + limit
        while time.perf_counter() < deadline:
            with open(path) as f:
                m = re.search(pattern, f.read())
            if m:
                return m
            time.sleep(0.005)
        raise RuntimeError(f"bench: restarts: '{pattern}' not in {path}")

    srv, path = start_server(1)
    wait_log(path, r"\[PSServer\] listening")
    pool = [subprocess.Popen([os.path.join(bin, "ps-worker"), "--server", server, "--name", f"w{i}"], cwd=ROOT, env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(workers)]
    out = []
    try:
        job = psctl("submit", SPEC, "--set", "training.epochs=10", server=server, bin=bin).strip()
        wait_log(path, r"job started")
        for k in range(kills):
            time.sleep(rng.uniform(1.0, 3.0))
            for w in pool:
                w.send_signal(signal.SIGSTOP)
            j = json.loads(psctl("status", job, "--json", server=server, bin=bin))["jobs"][0]
            done = (j["epoch"] - 1) * j["steps_per_epoch"] + j["step"]
            srv.kill()
            srv.wait()
            start = time.perf_counter()
            srv, path = start_server(k + 2)
            for w in pool:
                w.send_signal(signal.SIGCONT)
            wait_log(path, r"first step applied since the restart")
            seconds = time.perf_counter() - start
            m = re.search(r"phase=\w+ step=(\d+)\S* \[\w+\] job resumes from its checkpoint", open(path).read())
            resumed = int(m.group(1)) if m else 0
            out.append({"steps_done": done, "resumed_at": resumed, "redone": done - resumed, "seconds_to_first_step": seconds})
            log(f"bench: restarts: kill {k + 1}: {done} steps done, resumed at {resumed}, first step after {seconds:.2f} s")
        result = json.loads(psctl("wait", job, "--json", server=server, bin=bin).strip().splitlines()[-1])
    finally:
        for w in pool:
            w.send_signal(signal.SIGCONT)
            w.terminate()
        srv.terminate()
        for p in pool + [srv]:
            p.wait()
    local = measured([os.path.join(bin, "psctl"), "train", "--local", SPEC, "--json", "--output", "/dev/null",
                      "--set", "training.epochs=10"])
    return {"kills": out, "weights_sha256": result.get("weights_sha256"), "local_weights_sha256": local.get("weights_sha256")}


VENV = os.path.join(ROOT, ".venv-bench")
TORCH_OPT_IN = "opt-in: bench/run.sh --torch or make bench ARGS=--torch, which installs PyTorch into .venv-bench"
# One thread per PyTorch process, whichever library it would start threads in; gloo on the loopback.
TORCH_ENV = dict(ENV, MKL_NUM_THREADS="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo")


def torch_requirement():
    """What pip installs for --torch: $PS_BENCH_TORCH if set; else a CPU-only wheel (~200 MB) that pip's
    find-links ($PIP_FIND_LINKS) offers for this Python, pinned by its version; else torch from PyPI
    (with its CUDA libraries, ~3 GB)."""
    if os.environ.get("PS_BENCH_TORCH"):
        return os.environ["PS_BENCH_TORCH"]
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    for folder in os.environ.get("PIP_FIND_LINKS", "").split():
        if os.path.isdir(folder):
            for name in sorted(os.listdir(folder), reverse=True):
                m = re.match(rf"torch-([^-]+\+cpu)-{tag}-{tag}-.*linux.*x86_64\.whl$", name)
                if m:
                    return f"torch=={m.group(1)}"
    return "torch"


def ensure_torch():
    """(python of .venv-bench with torch, None), or (None, why not): creates the venv and installs torch and
    numpy with pip the first time (--torch only; never in make test)."""
    py = os.path.join(VENV, "bin/python")
    probe = lambda: os.access(py, os.X_OK) and subprocess.run(
        [py, "-c", "import torch, numpy"], capture_output=True).returncode == 0
    if probe():
        return py, None
    req = torch_requirement()
    log(f"bench: --torch: installing {req} and numpy into {os.path.relpath(VENV, ROOT)} with pip (once)")
    steps = (("python3 -m venv", [sys.executable, "-m", "venv", VENV]),
             (f"pip install {req} numpy", [py, "-m", "pip", "install", "-q", req, "numpy"]))
    for what, cmd in steps:
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if out.returncode != 0:
            last = (out.stderr.strip().splitlines() or [f"exit status {out.returncode}"])[-1]
            return None, f"not measured: {what} failed: {last}"
    return (py, None) if probe() else (None, f"not measured: torch does not import in {VENV}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torch_single(py, batch=512):
    """bench/torch_ddp.py in one process, 1 thread: its training-step rate and CPU, and the whole
    process's CPU (interpreter, import torch, loading)."""
    return measured([py, "bench/torch_ddp.py", "--world", "1", "--batch", str(batch)], env=TORCH_ENV)


def torch_ddp(py, batch=512, world=2):
    """PyTorch DistributedDataParallel, gloo, `world` processes of 1 thread, global batch `batch`:
    samples/s = the global samples ÷ the slower rank's training seconds; train_cpu_seconds = the ranks'
    CPU over their training steps, added; _cpu_seconds = the whole processes' CPU (rusage)."""
    port = free_port()
    before, start = children_cpu(), time.perf_counter()
    procs = [subprocess.Popen([py, "bench/torch_ddp.py", "--world", str(world), "--rank", str(r), "--port", str(port),
                               "--batch", str(batch)], cwd=ROOT, env=TORCH_ENV, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for r in range(world)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        if p.returncode != 0:
            sys.exit(f"bench: torch_ddp.py rank {procs.index(p)} failed ({p.returncode}):\n{err[-3000:]}")
    ranks = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    return {"samples_per_second": ranks[0]["samples"] / max(r["train_seconds"] for r in ranks),
            "train_cpu_seconds": sum(r["train_cpu_seconds"] for r in ranks), "ranks": ranks,
            "_cpu_seconds": children_cpu() - before, "_wall_seconds": time.perf_counter() - start}


def stats(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return {"min": None, "median": None, "max": None, "runs": []}
    return {"min": min(xs), "median": statistics.median(xs), "max": max(xs), "runs": xs}


def cpu_flags():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


def compute_signature():
    """`ps-bench signature` with the bench's environment: what our binaries compute with by default
    (signature, kernel, the reason for it, the best kernel for this CPU). None without a ps-bench
    that has the subcommand (a compare run against builds elsewhere need not have one here)."""
    if not os.access(PSBENCH, os.X_OK):
        return None
    out = subprocess.run([PSBENCH, "signature"], cwd=ROOT, env=ENV, capture_output=True, text=True)
    if out.returncode != 0:
        log(f"bench: ps-bench signature failed ({out.returncode}): {out.stderr.strip()[-300:]}")
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def kernels_to_compare(compute):
    """The fallback, Haswell and the kernel the choice uses here, without duplicates and without
    the ones this CPU cannot run. Where the machine sets OPENBLAS_CORETYPE (because some kernels
    compute wrong results on its CPU), only that kernel and the generic Prescott fallback."""
    best = (compute or {}).get("cpu_best_kernel")
    machine = os.environ.get("OPENBLAS_CORETYPE")
    flags = cpu_flags()
    wanted = dict.fromkeys(k for k in (("Prescott", machine) if machine else ("Prescott", "Haswell", best)) if k)
    if machine:
        log(f"bench: kernels: OPENBLAS_CORETYPE={machine} is set on this machine: comparing it with Prescott only")
    runnable = [k for k in wanted if KERNEL_NEEDS.get(k, set()) <= flags]
    for k in wanted:
        if k not in runnable:
            log(f"bench: kernels: skipping {k}, this CPU lacks {' '.join(sorted(KERNEL_NEEDS[k] - flags))}")
    return runnable


def environment():
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    flags = open("/proc/cpuinfo").read()
    import numpy
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return {
        "nproc": int(subprocess.run(["nproc"], capture_output=True, text=True).stdout),
        "cpu_model": cpu, "avx512f": " avx512f " in flags, "kernel": platform.release(),
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE", "(unset)"),
        "OPENBLAS_NUM_THREADS": "1", "numpy": numpy.__version__, "python": platform.python_version(),
        "git_commit": commit, "loadavg_at_start": os.getloadavg(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "compute": compute_signature(),
    }


def build_info(bin):
    """Where a set of binaries lies, and the commit of the checkout that holds it (if it is one):
    what a compare run's old and new builds were. dirty: that checkout has uncommitted changes to
    tracked files (the binaries may have been built from them, or not)."""
    git = lambda *a: subprocess.run(["git", "-C", bin, *a], capture_output=True, text=True)
    commit = git("rev-parse", "--short", "HEAD")
    return {"dir": bin, "git_commit": commit.stdout.strip() if commit.returncode == 0 else None,
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no").stdout.strip())
            if commit.returncode == 0 else None}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(ROOT, "runs/bench/results.json"))
    ap.add_argument("--skip", default="",
                    help="comma-separated sections to skip: local,cluster,wide,target,kernels,durability,tls,"
                         "straggler,compare")
    ap.add_argument("--torch", action="store_true",
                    help="also measure PyTorch DistributedDataParallel in the cluster section (P2.b512.ddp, "
                         "P3.b512.ddp); installs torch into .venv-bench with pip the first time")
    ap.add_argument("--straggler-runs", type=int, default=1,
                    help="repetitions of the straggler section (default 1: it runs up to 20 jobs of 6 epochs)")
    ap.add_argument("--straggler-epochs", type=int, default=6,
                    help="epochs of each straggler job (sync reaches 97.5%% in epoch 3, delayed d=1 in epoch 4-5; default 6)")
    ap.add_argument("--straggler-period-ms", type=int, default=60,
                    help="the straggler's duty cycle: it runs the first third of every period (default 60 ms)")
    ap.add_argument("--baseline", metavar="DIR",
                    help="another build's binary directory (psctl, ps-server, ps-worker): adds the section "
                         "'compare', P1 and P2 of that build ('old') against --candidate ('new'), alternating")
    ap.add_argument("--candidate", metavar="DIR", default=BIN,
                    help="the 'new' build of the compare section (default: .build/release)")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    compare = args.baseline is not None and "compare" not in skip
    needed = [PSCTL, PSBENCH] if {"local", "cluster", "wide", "target", "kernels", "durability", "tls",
                                  "straggler"} - skip else []
    if compare:
        builds = {"old": os.path.abspath(args.baseline), "new": os.path.abspath(args.candidate)}
        needed += [os.path.join(d, b) for d in builds.values() for b in ("psctl", "ps-server", "ps-worker")]
    for b in needed:
        if not os.access(b, os.X_OK):
            sys.exit(f"bench: {b} not found; run 'swift build -c release' first")
    env = environment()
    if compare:
        env["compare"] = {which: build_info(d) for which, d in builds.items()}
    log(f"bench: {env['nproc']} cores, {env['cpu_model']}, OPENBLAS_CORETYPE={env['OPENBLAS_CORETYPE']}, "
        f"{args.runs} runs of each, 1 epoch per rate; {compute_line(env)}")
    raw = {}
    t_start = time.perf_counter()
    local_args = ["train", "--local", SPEC, "--json", "--output", "/dev/null"]
    local = [PSCTL, *local_args]
    numpy_p1 = [sys.executable, "bench/numpy_mlp.py", "--epochs", "1", "--optimizer", "adam"]
    sgemm = [PSBENCH, "sgemm", "--size", "1024", "--reps", "3", "--min-seconds", "0.3"]
    gemm = [PSBENCH, "gemm", "--batch", "128", "--layers", "784,256,128,10", "--reps", "3", "--min-seconds", "0.3"]

    # P1, P1b, P4, reference: alternate numpy, local (chunks 4, 1), the GEMM bounds, sgemm, wire.
    if "local" not in skip:
        for r in range(args.runs):
            rep = {
                "numpy": measured(numpy_p1),
                "local_c4": measured(local),
                "gemm_c4": measured(gemm + ["--chunks", "4"]),
                "local_c1": measured(local + ["--set", "training.chunks=1"]),
                "gemm_c1": measured(gemm + ["--chunks", "1"]),
                "sgemm": measured(sgemm),
                "wire": measured([PSBENCH, "wire", "--floats", "1000000", "--reps", "3", "--min-seconds", "0.3"]),
                "update": measured([PSBENCH, "update", "--threads", "2", "--parameters", "1863690",
                                    "--reps", "3", "--min-seconds", "0.3"]),
            }
            raw.setdefault("local", []).append(rep)
            log(f"[{time.perf_counter() - t_start:5.0f}s] run {r + 1}/{args.runs} local: numpy "
                f"{rep['numpy']['samples_per_second']:,.0f}, local c4 {rep['local_c4']['samples_per_second']:,.0f}, "
                f"c1 {rep['local_c1']['samples_per_second']:,.0f}, gemm bound c4 "
                f"{rep['gemm_c4']['samples_per_second_max']:,.0f} samples/s; sgemm "
                f"{rep['sgemm']['gflops_best']:.0f} GFLOP/s; wire {rep['wire']['ratio_of_min_times']:.2f}")

    # P2, P3, worker scaling: clusters against train --local at the same batch size; at batch 512 also
    # delayed d=1 (n/a where this build refuses it or runs it as sync) and, with --torch, PyTorch DDP
    # against PyTorch in one process, in the same repetitions.
    notes = raw.setdefault("notes", {})
    torch_py = None
    if "cluster" not in skip:
        torch_py, notes["torch"] = ensure_torch() if args.torch else (None, f"not measured ({TORCH_OPT_IN})")
        if notes["torch"]:
            log(f"bench: PyTorch DDP: {notes['torch']}")
        for r in range(args.runs):
            rep = {}
            for batch in (128, 512):
                rep[f"local_b{batch}"] = measured(local + ["--set", f"training.batch_size={batch}"])
                rep[f"cluster2_b{batch}"] = cluster_epoch(2, batch)
                # The same jobs with 3 epochs: the CPU difference is 2 epochs of training and
                # validation, without the one-off costs (starting, loading the data 3 times, testing).
                rep[f"local_b{batch}_e3"] = measured(local + ["--set", f"training.batch_size={batch}",
                                                              "--set", "training.epochs=3"])
                rep[f"cluster2_b{batch}_e3"] = cluster_epoch(2, batch, epochs=3)
            if not notes.get("delayed"):
                try:
                    d1 = cluster_epoch(2, 512, overrides=[DELAYED1])
                    if d1.get("weights_sha256") == rep["cluster2_b512"].get("weights_sha256"):
                        notes["delayed"] = ("n/a: ran as sync: its weights equal sync's bit for bit (this server "
                                            "does not run delayed yet)")
                    else:
                        rep["cluster2_b512_delayed"] = d1
                        rep["cluster2_b512_delayed_e3"] = cluster_epoch(2, 512, epochs=3, overrides=[DELAYED1])
                except PsctlFailed as e:
                    notes["delayed"] = f"n/a: {e.message}"
                if notes.get("delayed"):
                    log(f"bench: delayed d=1: {notes['delayed']}")
            if torch_py:
                rep["torch1_b512"] = torch_single(torch_py)
                rep["ddp2_b512"] = torch_ddp(torch_py)
            rep["cluster1_b512"] = cluster_epoch(1, 512)
            rep["cluster4_b512"] = cluster_epoch(4, 512)
            raw.setdefault("cluster", []).append(rep)
            log(f"[{time.perf_counter() - t_start:5.0f}s] run {r + 1}/{args.runs} cluster: " + ", ".join(
                f"{k} {v['samples_per_second']:,.0f}" for k, v in rep.items()))

    # Scaling with model size: 784-1024-1024-10, local against numpy, and a 2-worker cluster against
    # local at batch 512 (this model is pushed in two ranges, so it shows the overlap of pushes,
    # updates and weights with backward that the example model, pushed whole, does not have).
    if "wide" not in skip:
        for r in range(args.runs):
            rep = {
                "numpy": measured([sys.executable, "bench/numpy_mlp.py", "--epochs", "1", "--layers", "1024,1024"]),
                "local_c4": measured(local + ["--set", f"model.layers={WIDE}"]),
                "gemm_c4": measured([PSBENCH, "gemm", "--batch", "128", "--chunks", "4", "--layers",
                                     "784,1024,1024,10", "--reps", "3", "--min-seconds", "0.3"]),
                "local_b512": measured(local + ["--set", f"model.layers={WIDE}", "--set", "training.batch_size=512"]),
                "cluster2_b512": cluster_epoch(2, 512, overrides=[f"model.layers={WIDE}"]),
            }
            raw.setdefault("wide", []).append(rep)
            log(f"[{time.perf_counter() - t_start:5.0f}s] run {r + 1}/{args.runs} wide: numpy "
                f"{rep['numpy']['samples_per_second']:,.0f}, local {rep['local_c4']['samples_per_second']:,.0f}, "
                f"b512 local {rep['local_b512']['samples_per_second']:,.0f}, cluster of 2 "
                f"{rep['cluster2_b512']['samples_per_second']:,.0f}")

    # kernels: what the kernel choice is worth. OPENBLAS_CORETYPE goes to our binaries only; numpy
    # keeps the machine's, so the P1 of every kernel divides by the same numpy. Each kernel's
    # psctl run follows its own numpy run (P1's pairing), and the kernels' order rotates from one
    # repetition to the next so that drift within a repetition does not always favour the same one.
    if "kernels" not in skip:
        kernels = kernels_to_compare(env["compute"])
        if not kernels:
            log("bench: kernels: no kernel to compare on this CPU")
        for r in range(args.runs if kernels else 0):
            rep = {}
            for k in kernels[r % len(kernels):] + kernels[:r % len(kernels)]:
                forced = dict(ENV, OPENBLAS_CORETYPE=k)
                rep[k] = {"numpy": measured(numpy_p1), "local_c4": measured(local, env=forced),
                          "sgemm": measured(sgemm, env=forced)}
                ran = (rep[k]["local_c4"].get("_blas_kernel"), rep[k]["sgemm"].get("openblas_core"))
                if ran != (k, k):
                    log(f"bench: kernels: asked for {k}, psctl ran {ran[0]}, ps-bench sgemm ran {ran[1]}")
            raw.setdefault("kernels", []).append(rep)
            log(f"[{time.perf_counter() - t_start:5.0f}s] run {r + 1}/{args.runs} kernels: " + "; ".join(
                f"{k} sgemm {v['sgemm']['gflops_best']:.0f} GFLOP/s, local {v['local_c4']['samples_per_second']:,.0f} / "
                f"numpy {v['numpy']['samples_per_second']:,.0f}" for k, v in rep.items()))

    # durability: what checkpointing costs (default checkpointing against none, 3 epochs, alternating
    # which goes first) and what a crash costs (restarts: kill -9 five times, time to the first step
    # applied again, steps redone per kill).
    if "durability" not in skip:
        for r in range(args.runs):
            order = ["default", "off"] if r % 2 == 0 else ["off", "default"]
            rep = {}
            for which in order:
                rep[which] = cluster_epoch(2, 128, epochs=3, overrides=NO_CHECKPOINTS if which == "off" else ())
            raw.setdefault("durability", []).append(rep)
            log(f"[{time.perf_counter() - t_start:5.0f}s] run {r + 1}/{args.runs} durability: default checkpointing "
                f"{rep['default']['samples_per_second']:,.0f}, none {rep['off']['samples_per_second']:,.0f} samples/s")
        raw["restarts"] = restarts()

    # tls: what mutual TLS on every connection costs: the 2-worker cluster at batch 512 with and without it,
    # alternating which goes first. The certificates are made once (EC P-256, as make-certs.sh makes them).
    if "tls" not in skip:
        certs = os.path.join(ROOT, "runs/bench/certs")
        subprocess.run(["rm", "-rf", certs], check=True)
        subprocess.run([MAKE_CERTS, certs], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        token = os.path.join(ROOT, "runs/bench/token")
        with open(token, "w") as f:
            f.write(os.urandom(24).hex() + "\n")
        for r in range(args.runs):
            order = [["tls", "plain", "token"], ["plain", "token", "tls"], ["token", "tls", "plain"]][r % 3]
            rep = {which: cluster_epoch(2, 512, tls=certs if which == "tls" else None,
                                        token=token if which == "token" else None) for which in order}
            raw.setdefault("tls", []).append(rep)
            log(f"[{time.perf_counter() - t_start:5.0f}s] run {r + 1}/{args.runs} tls: mutual TLS "
                f"{rep['tls']['samples_per_second']:,.0f}, token only {rep['token']['samples_per_second']:,.0f}, "
                f"plaintext {rep['plain']['samples_per_second']:,.0f} samples/s; "
                f"CPU s {rep['tls']['_cpu_seconds']:.2f} / {rep['plain']['_cpu_seconds']:.2f}")

    # straggler: one worker slowed to a third of its speed, every consistency mode against the same job
    # without it (samples/s, time to 97.5%, bits).
    if "straggler" not in skip:
        period = args.straggler_period_ms
        raw["straggler"] = straggler(args.straggler_runs, args.straggler_epochs, period // 3, period, t_start=t_start)

    # P5: time to 97.5% test accuracy, 2-worker cluster against numpy on one core.
    if "target" not in skip:
        for r in range(args.runs):
            rep = {
                "cluster2": cluster_to_target(2, 0.975),
                "numpy": measured([sys.executable, "bench/numpy_mlp.py", "--epochs", "10", "--validation-split", "0",
                                   "--target", "0.975"]),
            }
            raw.setdefault("target", []).append(rep)
            log(f"[{time.perf_counter() - t_start:5.0f}s] run {r + 1}/{args.runs} target: cluster "
                f"{rep['cluster2']['seconds_to_target']} s (epoch {rep['cluster2']['epoch']}), numpy wall "
                f"{rep['numpy']['wall_seconds_to_target']} s, training {rep['numpy']['seconds_to_target']} s "
                f"(epoch {rep['numpy']['epochs_run']})")

    # compare: P1's and P2's measurements with two builds, "old" (--baseline) and "new" (--candidate),
    # to show that a change of the code is not slower. Each measurement is taken with both builds
    # back to back, old first in even repetitions and new first in odd ones (ABBA), so drift within
    # the run hits both alike; numpy once per repetition, for P1 of each build. The cluster (server,
    # workers) and psctl are the build's own.
    if compare:
        if builds["old"] == builds["new"]:
            log("bench: --baseline and --candidate are the same directory; compare only checks itself")
        for r in range(args.runs):
            order = ["old", "new"] if r % 2 == 0 else ["new", "old"]
            rep = {"order": order, "old": {}, "new": {},
                   "numpy": measured(numpy_p1)}
            train_local = lambda bin, *extra: measured([os.path.join(bin, "psctl"), *local_args, *extra])
            for name, measure in (
                ("local_c4", lambda bin: train_local(bin)),
                ("cluster2_b128", lambda bin: cluster_epoch(2, 128, bin=bin)),
                ("local_b512", lambda bin: train_local(bin, "--set", "training.batch_size=512")),
                ("cluster2_b512", lambda bin: cluster_epoch(2, 512, bin=bin)),
            ):
                for which in order:
                    rep[which][name] = measure(builds[which])
            raw.setdefault("compare", []).append(rep)
            log(f"[{time.perf_counter() - t_start:5.0f}s] run {r + 1}/{args.runs} compare ({', '.join(order)}): "
                f"numpy {rep['numpy']['samples_per_second']:,.0f}; " + "; ".join(
                    f"{which} " + ", ".join(f"{k} {v['samples_per_second']:,.0f}" for k, v in rep[which].items())
                    for which in order))

    if "local" in raw:
        env["openblas_core"] = raw["local"][0]["sgemm"].get("openblas_core")
        env["openblas_config"] = raw["local"][0]["sgemm"].get("openblas_config")
    rows = table(raw)
    print_table(rows, env)
    if "straggler" in raw:
        print_straggler(raw["straggler"])
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"environment": env, "seconds": time.perf_counter() - t_start, "table": rows,
                   "straggler_table": straggler_summary(raw["straggler"]) if "straggler" in raw else None,
                   "raw": raw}, f, indent=1)
    log(f"bench: wrote {os.path.relpath(args.out, ROOT)} ({time.perf_counter() - t_start:.0f} s)")


def ratio(reps, num, den):
    out = []
    for rep in reps:
        a, b = num(rep), den(rep)
        out.append(a / b if a is not None and b not in (None, 0) else None)
    return stats(out)


def table(raw):
    rows = []

    def row(key, what, s, unit="", target=None, better="higher", note=None):
        """note: shown instead of the figures when there are none (a mode this build does not run, an
        opt-in measurement not asked for)."""
        passed = None
        if target is not None and s["median"] is not None:
            passed = s["median"] >= target if better == "higher" else s["median"] <= target
        rows.append({"key": key, "what": what, "unit": unit, "min": s["min"], "median": s["median"],
                     "max": s["max"], "runs": s["runs"], "target": target, "better": better, "pass": passed,
                     "note": note if s["median"] is None else None})

    sps = lambda name: (lambda rep: rep[name]["samples_per_second"])
    if "local" in raw:
        L = raw["local"]
        row("P1", "train --local / numpy, chunks 4 (samples/s)", ratio(L, sps("local_c4"), sps("numpy")), "x", 1.0)
        row("P1.c1", "train --local / numpy, chunks 1", ratio(L, sps("local_c1"), sps("numpy")), "x")
        bound = lambda name: (lambda rep: rep[name]["samples_per_second_max"])
        row("P1b", "train --local / GEMM bound, chunks 4", ratio(L, sps("local_c4"), bound("gemm_c4")), "x", 0.9)
        row("P1b.c1", "train --local / GEMM bound, chunks 1", ratio(L, sps("local_c1"), bound("gemm_c1")), "x")
        row("P4", "wire: memcpy / (encode + decode), 1M floats",
            stats([rep["wire"]["ratio_of_min_times"] for rep in L]), "x", 0.8)
        row("ref.sgemm", "sgemm 1024, 1 thread", stats([rep["sgemm"]["gflops_best"] for rep in L]), "GFLOP/s")
        row("ref.gemm", "GEMMs of a batch-128 chunks-4 step, 1 thread",
            stats([rep["gemm_c4"]["gflops_best"] for rep in L]), "GFLOP/s")
        for name, label in (("numpy", "numpy, Adam, batch 128"), ("local_c4", "train --local, chunks 4"),
                            ("local_c1", "train --local, chunks 1")):
            row(f"rate.{name}", label, stats([rep[name]["samples_per_second"] for rep in L]), "samples/s")
        for name, label in (("gemm_c4", "GEMM bound, chunks 4"), ("gemm_c1", "GEMM bound, chunks 1")):
            row(f"rate.{name}", label, stats([rep[name]["samples_per_second_max"] for rep in L]), "samples/s")
        row("wire.encode", "encodeFrame 1M floats", stats([rep["wire"]["encode_gb_per_second"] for rep in L]), "GB/s")
        row("wire.decode", "Envelope(payload:) 1M floats",
            stats([rep["wire"]["decode_gb_per_second"] for rep in L]), "GB/s")
        row("wire.memcpy", "memcpy 4 MB", stats([rep["wire"]["memcpy_gb_per_second"] for rep in L]), "GB/s")
        row("update.threads2", "server update (mean + Adam, 1.86M = wide model): 1 thread / 2 threads",
            stats([rep["update"]["speedup_of_min_times"] for rep in L]), "x")
    if "cluster" in raw:
        C = raw["cluster"]
        for batch in (128, 512):
            row(f"P2.b{batch}", f"cluster 2 workers / train --local, batch {batch}",
                ratio(C, sps(f"cluster2_b{batch}"), sps(f"local_b{batch}")), "x", 1.5 if batch == 512 else None)
        cpu = lambda name: (lambda rep: rep[name]["_cpu_seconds"])
        for batch in (128, 512):
            row(f"P3.b{batch}", f"CPU s/sample, cluster 2 workers / train --local, batch {batch}",
                ratio(C, cpu(f"cluster2_b{batch}"), cpu(f"local_b{batch}")), "x", 1.15, "lower")
        steady = lambda name: (lambda rep: rep[f"{name}_e3"]["_cpu_seconds"] - rep[name]["_cpu_seconds"])
        for batch in (128, 512):
            row(f"P3.steady.b{batch}", f"same, epochs 2-3 only (no start-up or loading), batch {batch}",
                ratio(C, steady(f"cluster2_b{batch}"), steady(f"local_b{batch}")), "x")
        for batch in (128, 512):
            row(f"cpu.local_b{batch}", f"train --local CPU per sample, batch {batch}",
                stats([rep[f"local_b{batch}"]["_cpu_seconds"] / 54000 * 1e6 for rep in C]), "us")
            row(f"cpu.cluster2_b{batch}", f"cluster 2 workers CPU per sample, batch {batch}",
                stats([rep[f"cluster2_b{batch}"]["_cpu_seconds"] / 54000 * 1e6 for rep in C]), "us")
        # delayed d=1 and PyTorch DDP at batch 512 (n/a or not measured: the note says why).
        of = lambda name, field: (lambda rep: rep[name][field] if name in rep else None)
        notes = raw.get("notes", {})
        row("P2.b512.delayed", "cluster 2 workers, delayed d=1 / train --local, batch 512",
            ratio(C, of("cluster2_b512_delayed", "samples_per_second"), sps("local_b512")), "x", 1.3,
            note=notes.get("delayed"))
        row("P3.b512.delayed", "CPU s/sample, cluster 2 workers delayed d=1 / train --local, batch 512",
            ratio(C, of("cluster2_b512_delayed", "_cpu_seconds"), cpu("local_b512")), "x", 1.4, "lower",
            note=notes.get("delayed"))
        steady_of = lambda name: (lambda rep: rep[f"{name}_e3"]["_cpu_seconds"] - rep[name]["_cpu_seconds"]
                                                   if name in rep else None)
        row("P3.steady.b512.delayed", "same, epochs 2-3 only, delayed d=1",
            ratio(C, steady_of("cluster2_b512_delayed"), steady("local_b512")), "x", note=notes.get("delayed"))
        row("P2.b512.ddp", "PyTorch DDP 2 processes (gloo) / PyTorch 1 process, batch 512",
            ratio(C, of("ddp2_b512", "samples_per_second"), of("torch1_b512", "samples_per_second")), "x",
            note=notes.get("torch"))
        row("P3.b512.ddp", "CPU s/sample of the training steps, DDP 2 processes / 1 process",
            ratio(C, of("ddp2_b512", "train_cpu_seconds"), of("torch1_b512", "train_cpu_seconds")), "x", None,
            "lower", note=notes.get("torch"))
        row("P3.b512.ddp.whole", "same, whole processes (start, import torch, loading, training)",
            ratio(C, of("ddp2_b512", "_cpu_seconds"), of("torch1_b512", "_cpu_seconds")), "x", None, "lower",
            note=notes.get("torch"))
        for name, label in (("cluster2_b512_delayed", "cluster 2 workers, delayed d=1, batch 512"),
                            ("torch1_b512", "PyTorch 1 process, 1 thread, batch 512"),
                            ("ddp2_b512", "PyTorch DDP 2 processes, 1 thread each, batch 512")):
            row(f"rate.{name}", label, stats([of(name, "samples_per_second")(rep) for rep in C]), "samples/s",
                note=notes.get("delayed" if "delayed" in name else "torch"))
        for w in (1, 2, 4):
            row(f"scale.w{w}", f"cluster {w} worker(s) / train --local, batch 512",
                ratio(C, sps(f"cluster{w}_b512"), sps("local_b512")), "x")
        for name, label in (("local_b128", "train --local, batch 128"), ("cluster2_b128", "cluster 2 workers, batch 128"),
                            ("local_b512", "train --local, batch 512"), ("cluster1_b512", "cluster 1 worker, batch 512"),
                            ("cluster2_b512", "cluster 2 workers, batch 512"),
                            ("cluster4_b512", "cluster 4 workers, batch 512")):
            row(f"rate.{name}", label, stats([rep[name]["samples_per_second"] for rep in C]), "samples/s")
    if "wide" in raw:
        W = raw["wide"]
        row("scale.wide", "784-1024-1024-10: train --local / numpy", ratio(W, sps("local_c4"), sps("numpy")), "x")
        row("scale.wide.P1b", "784-1024-1024-10: train --local / GEMM bound",
            ratio(W, sps("local_c4"), lambda r: r["gemm_c4"]["samples_per_second_max"]), "x")
        row("rate.wide_gemm", "784-1024-1024-10 GEMM bound, chunks 4",
            stats([r["gemm_c4"]["samples_per_second_max"] for r in W]), "samples/s")
        row("rate.wide_numpy", "784-1024-1024-10 numpy", stats([r["numpy"]["samples_per_second"] for r in W]),
            "samples/s")
        row("rate.wide_local", "784-1024-1024-10 train --local",
            stats([r["local_c4"]["samples_per_second"] for r in W]), "samples/s")
        row("scale.wide.P2", "784-1024-1024-10: cluster 2 workers / train --local, batch 512",
            ratio(W, sps("cluster2_b512"), sps("local_b512")), "x")
        row("cpu.wide.P3", "784-1024-1024-10: CPU per sample, cluster 2 workers / train --local, batch 512",
            ratio(W, lambda r: r["cluster2_b512"]["_cpu_seconds"], lambda r: r["local_b512"]["_cpu_seconds"]), "x")
    if "straggler" in raw:
        for e in straggler_summary(raw["straggler"]):
            key = f"S.w{e['workers']}.{e['mode']}"
            row(key, f"{e['workers']} workers, {e['label']}: straggler / none (samples/s)", e.get("rate_ratio", stats([])),
                "x", e["target"], note=e.get("note"))
            if e["mode"] in SYNC_MODES and "bits_kept" in e:
                row(f"{key}.bits", f"{e['workers']} workers, {e['label']}: straggler's weights = sync's (1 = yes)",
                    stats([1.0 if e["bits_kept"] else 0.0]), "", 1.0)
    if "target" in raw:
        T = raw["target"]
        row("P5", "s to 97.5% test acc, cluster 2w / numpy (wall incl. load + eval)",
            ratio(T, lambda r: r["cluster2"]["seconds_to_target"], lambda r: r["numpy"]["wall_seconds_to_target"]),
            "x", 0.7, "lower")
        row("P5.train", "same, / numpy's training steps only",
            ratio(T, lambda r: r["cluster2"]["seconds_to_target"], lambda r: r["numpy"]["seconds_to_target"]),
            "x", None, "lower")
        row("time.cluster2", "cluster 2 workers: seconds to 97.5%",
            stats([r["cluster2"]["seconds_to_target"] for r in T]), "s")
        row("time.numpy_wall", "numpy: wall seconds to 97.5% (incl. load + eval)",
            stats([r["numpy"]["wall_seconds_to_target"] for r in T]), "s")
        row("time.numpy_train", "numpy: training seconds to 97.5%",
            stats([r["numpy"]["seconds_to_target"] for r in T]), "s")
    if "kernels" in raw:
        K = raw["kernels"]
        for k in K[0]:
            of = lambda name, field: (lambda rep: rep[k][name][field])
            row(f"kernel.{k}.sgemm", f"kernel {k}: sgemm 1024, 1 thread, best of 3",
                stats([of("sgemm", "gflops_best")(rep) for rep in K]), "GFLOP/s")
            row(f"kernel.{k}.sgemm.median", f"kernel {k}: sgemm 1024, 1 thread, median of 3",
                stats([of("sgemm", "gflops_median")(rep) for rep in K]), "GFLOP/s")
            row(f"kernel.{k}.P1", f"kernel {k}: train --local / numpy, chunks 4 (samples/s)",
                ratio(K, of("local_c4", "samples_per_second"), of("numpy", "samples_per_second")), "x")
    if "durability" in raw:
        D = raw["durability"]
        row("D1", "cluster 2 workers, 3 epochs: default checkpointing / none (samples/s)",
            ratio(D, sps("default"), sps("off")), "x", 0.99)
        for which, label in (("default", "default checkpointing"), ("off", "no checkpoints")):
            row(f"rate.ckpt_{which}", f"cluster 2 workers, batch 128, 3 epochs, {label}",
                stats([rep[which]["samples_per_second"] for rep in D]), "samples/s")
    if "restarts" in raw:
        K = raw["restarts"]["kills"]
        row("D2", "server kill -9 + restart: seconds to the first applied step (5 kills)",
            stats([k["seconds_to_first_step"] for k in K]), "s", None, "lower")
        row("D3", "steps redone per kill (default checkpointing: each epoch's end, 422 steps)",
            stats([k["redone"] for k in K]), "steps", None, "lower")
        same = raw["restarts"]["weights_sha256"] == raw["restarts"]["local_weights_sha256"]
        row("D4", "weights after 5 kills equal train --local's (1 = yes)", stats([1.0 if same else 0.0]), "", 1.0)
    if "tls" in raw:
        T = raw["tls"]
        row("A1", "cluster 2 workers, batch 512: shared token (auth) / none (samples/s)",
            ratio(T, sps("token"), sps("plain")), "x", 0.98)
        row("T1", "cluster 2 workers, batch 512: mutual TLS / plaintext (samples/s)", ratio(T, sps("tls"), sps("plain")), "x")
        cpu = lambda which, name=None: (lambda rep: rep[which]["_cpu_by_process"][name] if name else rep[which]["_cpu_seconds"])
        row("T1.cpu", "cluster 2 workers, batch 512: CPU seconds, mutual TLS / plaintext",
            ratio(T, cpu("tls"), cpu("plain")), "x", None, "lower")
        row("T1.cpu.server", "same, ps-server's CPU seconds only", ratio(T, cpu("tls", "server"), cpu("plain", "server")),
            "x", None, "lower")
        row("T1.cpu.worker", "same, worker-1's CPU seconds only",
            ratio(T, cpu("tls", "worker-1"), cpu("plain", "worker-1")), "x", None, "lower")
        for which, label in (("tls", "mutual TLS"), ("plain", "plaintext")):
            row(f"rate.tls_{which}", f"cluster 2 workers, batch 512, {label}",
                stats([rep[which]["samples_per_second"] for rep in T]), "samples/s")
    if "compare" in raw:
        X = raw["compare"]
        of = lambda which, name: (lambda rep: rep[which][name]["samples_per_second"])
        rates = (("local_c4", "train --local, batch 128, chunks 4"), ("cluster2_b128", "cluster 2 workers, batch 128"),
                 ("local_b512", "train --local, batch 512"), ("cluster2_b512", "cluster 2 workers, batch 512"))
        for name, label in rates:
            row(f"cmp.{name}", f"new / old: {label} (samples/s)", ratio(X, of("new", name), of("old", name)), "x")
        for which in ("old", "new"):
            row(f"P1.{which}", f"{which}: train --local / numpy, chunks 4 (samples/s)",
                ratio(X, of(which, "local_c4"), sps("numpy")), "x")
        for batch, local_name in ((128, "local_c4"), (512, "local_b512")):
            for which in ("old", "new"):
                row(f"P2.b{batch}.{which}", f"{which}: cluster 2 workers / train --local, batch {batch}",
                    ratio(X, of(which, f"cluster2_b{batch}"), of(which, local_name)), "x")
        row("cmp.numpy", "numpy, Adam, batch 128", stats([rep["numpy"]["samples_per_second"] for rep in X]),
            "samples/s")
        for which in ("old", "new"):
            for name, label in rates:
                row(f"{which}.{name}", f"{which}: {label}", stats([of(which, name)(rep) for rep in X]), "samples/s")
    return rows


def straggler_summary(S):
    """One entry per worker count and mode: the medians of samples/s and seconds to 97.5% with the
    straggler and without, the ratios (min and median over the repetitions), whether the weights kept
    their bits, or the mode's note (n/a: why)."""
    out = []
    backup_note = None
    if "backup_chunks" in S["na"].get("sync_nobackup", ""):
        backup_note = "this build has no training.backup_chunks: sync without backup copies"
    for w in S["worker_counts"]:
        for key, label, _ in STRAGGLER_MODES:
            entry = {"workers": w, "mode": key, "label": label, "target": 0.8 if key == "sync" else None}
            if key in S["na"]:
                out.append(dict(entry, note=f"n/a: {S['na'][key]}"))
                continue
            pairs = [(rep[f"w{w}.{key}"], rep.get(f"w{w}.sync", {}).get("none")) for rep in S["reps"]
                     if f"w{w}.{key}" in rep]
            if not pairs:
                continue
            field = lambda which, name: stats([p[which][name] for p, _ in pairs])
            both = lambda name: [(p["straggler"][name], p["none"][name]) for p, _ in pairs]
            entry.update({
                "rate": field("straggler", "samples_per_second"), "rate_none": field("none", "samples_per_second"),
                "rate_ratio": stats([a / b for a, b in both("samples_per_second")]),
                "t975": field("straggler", "seconds_to_target"), "t975_none": field("none", "seconds_to_target"),
                "t975_ratio": stats([a / b if a is not None and b else None for a, b in both("seconds_to_target")]),
                "epoch_at_target": [(p["straggler"]["epoch_at_target"], p["none"]["epoch_at_target"]) for p, _ in pairs],
                "running_fraction": field("straggler", "straggler_running_fraction"),
                "server_log_lines_with_backup": [p["straggler"]["server_log_lines_with_backup"] for p, _ in pairs],
                "note": backup_note if key == "sync" else None,
            })
            if key in SYNC_MODES:
                # The no-straggler sync run of the same repetition, or train --local's (the same bits).
                entry["bits_kept"] = all(
                    p["straggler"]["weights_sha256"] == (ref or {}).get("weights_sha256", S["local_weights_sha256"])
                    for p, ref in pairs)
            out.append(entry)
    return out


def print_straggler(S):
    print(f"\nstraggler: worker-1 runs {S['run_ms']} ms of every {S['period_ms']} ms (SIGSTOP/SIGCONT from the "
          f"bench); bench/mnist-target.yaml, batch 128, {S['epochs']} epochs; medians of {len(S['reps'])} run(s); "
          f"97.5% = first epoch whose validation (test set) accuracy >= 0.975, wall seconds from submit "
          f"(TensorBoard event file)")
    print(f"{'w':>2} {'mode':30} {'samples/s':>9} {'none':>9} {'ratio':>6} {'target':>7} {'status':7} "
          f"{'s to 97.5%':>10} {'none':>6} {'ratio':>6} {'bits':>5} {'running':>7}")
    for e in straggler_summary(S):
        if "rate" not in e:
            print(f"{e['workers']:>2} {e['label']:30} {e.get('note') or ''}")
            continue
        med = lambda k: e[k]["median"]
        passed = "" if e["target"] is None or med("rate_ratio") is None else (
            "met" if med("rate_ratio") >= e["target"] else "NOT MET")
        target = "" if e["target"] is None else f"≥ {e['target']:g}"
        bits = "" if "bits_kept" not in e else ("same" if e["bits_kept"] else "DIFF")
        f = lambda x, d=1: "-" if x is None else f"{x:.{d}f}"
        print(f"{e['workers']:>2} {e['label']:30} {fmt(med('rate'), 'samples/s'):>9} {fmt(med('rate_none'), 'samples/s'):>9} "
              f"{f(med('rate_ratio'), 2):>6} {target:>7} {passed:7} {f(med('t975')):>10} {f(med('t975_none')):>6} "
              f"{f(med('t975_ratio'), 2):>6} {bits:>5} {f(med('running_fraction'), 3):>7}"
              + (f"  ({e['note']})" if e.get("note") else ""))


def fmt(x, unit):
    if x is None:
        return "-"
    if unit == "samples/s":
        return f"{x:,.0f}"
    if unit in ("GFLOP/s", "us"):
        return f"{x:.1f}"
    return f"{x:.2f}"


def compute_line(env):
    c = env.get("compute")
    if not c:
        return "compute signature unknown (no ps-bench signature)"
    return f"compute signature {c['compute_signature']} (kernel {c['blas_kernel']}: {c['kernel_reason']})"


def print_table(rows, env):
    core = env.get("openblas_core") or (env.get("compute") or {}).get("blas_kernel", "?")
    print(f"machine: {env['nproc']} cores, {env['cpu_model']}, OPENBLAS_CORETYPE={env['OPENBLAS_CORETYPE']}, "
          f"OpenBLAS core {core}, numpy {env['numpy']}, commit {env['git_commit']}")
    print(compute_line(env))
    for which, b in env.get("compare", {}).items():
        print(f"compare {which}: {b['dir']} (checkout at {b['git_commit'] or '?'}{', dirty' if b['dirty'] else ''})")
    # The kernel rows' keys (kernel.Cooperlake.sgemm.median) are longer than the others.
    width = max([18] + [len(r["key"]) for r in rows])
    print(f"{'figure':{width}} {'what':66} {'min':>9} {'median':>9}  {'target':>7}  status")
    for r in rows:
        target = "" if r["target"] is None else ("≥ " if r["better"] == "higher" else "≤ ") + f"{r['target']:g}"
        status = "" if r["pass"] is None else ("met" if r["pass"] else "NOT MET")
        unit = "" if r["unit"] == "x" else f" ({r['unit']})"
        if r.get("note"):
            # Long refusals are cut here; results.json and the straggler table keep them whole.
            note = r["note"] if len(r["note"]) <= 100 else r["note"][:99] + "…"
            print(f"{r['key']:{width}} {(r['what'] + unit)[:66]:66} {note}" + (f"  [target {target}]" if target else ""))
            continue
        print(f"{r['key']:{width}} {(r['what'] + unit)[:66]:66} {fmt(r['min'], r['unit']):>9} "
              f"{fmt(r['median'], r['unit']):>9}  {target:>7}  {status}")


if __name__ == "__main__":
    main()
