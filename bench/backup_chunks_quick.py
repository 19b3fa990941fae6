#!/usr/bin/env python3
"""Quick straggler figures for backup chunks (issue #15): samples/s of the MNIST bench job
(bench/mnist-bench.yaml, 1 epoch) on N workers with no straggler, and with the last worker running a
third of the time (SIGSTOP/SIGCONT duty cycle: ON ms running of every ON+OFF) with backup chunks on and
off. Runs alternate, so a change of machine load hits every configuration alike.
Usage: bench/backup_chunks_quick.py [--workers 2] [--runs 2] [--on-ms 20 --off-ms 40]
Needs a release build (.build/release). 'off' needs training.backup_chunks in the spec schema."""
import argparse, json, os, signal, subprocess, tempfile, threading, time, re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, ".build/release")
SPEC = "bench/mnist-bench.yaml"


def run(workers, straggler, backups, on, off):
    d = tempfile.mkdtemp(prefix="ps-backup-bench-")
    log = open(os.path.join(d, "server.log"), "w")
    srv = subprocess.Popen([os.path.join(BIN, "ps-server"), "--listen", "127.0.0.1:0", "--data-dir", d + "/data",
                            "--heartbeat-timeout", "10"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    addr = None
    for _ in range(400):
        m = re.search(r"address=(127\.0\.0\.1:\d+)", open(log.name).read())
        if m:
            addr = m.group(1)
            break
        time.sleep(0.05)
    pool = [subprocess.Popen([os.path.join(BIN, "ps-worker"), "--server", addr, "--name", f"w{i}"], cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(workers)]
    stop = threading.Event()

    def cycle(pid):
        while not stop.is_set():
            os.kill(pid, signal.SIGSTOP)
            time.sleep(off)
            os.kill(pid, signal.SIGCONT)
            time.sleep(on)

    try:
        ps = lambda *a: subprocess.run([os.path.join(BIN, "psctl"), "--server", addr, *a], cwd=ROOT, check=True,
                                       capture_output=True, text=True).stdout
        while len(json.loads(ps("status", "--json")).get("cluster", {}).get("workers", [])) < workers:
            time.sleep(0.05)
        t = threading.Thread(target=cycle, args=(pool[-1].pid,)) if straggler else None
        if t:
            t.start()
        sets = ["--set", "training.epochs=1"] + ([] if backups else ["--set", "training.backup_chunks=false"])
        out = json.loads(ps("submit", SPEC, *sets, "--wait", "--json").strip().splitlines()[-1])
    finally:
        stop.set()
        if straggler:
            t.join()
        for w in pool:
            w.send_signal(signal.SIGCONT)
            w.terminate()
        srv.terminate()
        srv.wait()
    return out["samples_per_second"], out["weights_sha256"]


def main():
    a = argparse.ArgumentParser()
    a.add_argument("--workers", type=int, default=2)
    a.add_argument("--runs", type=int, default=2)
    a.add_argument("--on-ms", type=float, default=20)
    a.add_argument("--off-ms", type=float, default=40)
    o = a.parse_args()
    configs = [("no straggler", False, True), ("straggler, backups on", True, True), ("straggler, backups off", True, False)]
    rates = {c[0]: [] for c in configs}
    shas = set()
    for r in range(o.runs):
        for name, straggler, backups in configs:
            rate, sha = run(o.workers, straggler, backups, o.on_ms / 1000, o.off_ms / 1000)
            rates[name].append(rate)
            shas.add(sha)
            print(f"run {r + 1}: {o.workers} workers, {name}: {rate:.0f} samples/s", flush=True)
    base = sorted(rates["no straggler"])[len(rates["no straggler"]) // 2]
    for name, values in rates.items():
        m = sorted(values)[len(values) // 2]
        print(f"{o.workers} workers, {name}: median {m:.0f} samples/s = {m / base:.2f} of no straggler")
    print("weights_sha256:", "the same in every run" if len(shas) == 1 else f"DIFFERENT: {shas}")


if __name__ == "__main__":
    main()
