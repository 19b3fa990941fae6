#!/usr/bin/env python3
"""Checks of bench/run.py's own machinery (not of the product): the straggler's duty cycle, the
TensorBoard event reader that times 97.5%, psctl's refusals as n/a notes, and the choice of the torch
wheel for --torch. Takes a few seconds; needs no build:

    python3 bench/test_harness.py
"""
import os
import struct
import subprocess
import sys
import tempfile
import time
import unittest

import run


def state(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


class DutyCycleTests(unittest.TestCase):
    def test_a_busy_process_runs_a_third_of_the_time_and_is_left_running(self):
        child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            time.sleep(0.2)
            cpu0, t0 = run.proc_cpu(child.pid), time.perf_counter()
            cycle = run.DutyCycle(child.pid, 20, 60)
            cycle.start()
            time.sleep(1.5)
            fraction = cycle.stop()
            share = (run.proc_cpu(child.pid) - cpu0) / (time.perf_counter() - t0)
            print(f"\nduty cycle 20/60 ms: running {fraction:.3f} of the time, CPU share {share:.3f}", file=sys.stderr)
            # The harness's wake-ups decide the fraction; bounds generous for a loaded 2-core machine.
            self.assertGreater(fraction, 0.28)
            self.assertLess(fraction, 0.45)
            self.assertLess(share, 0.5, "a process stopped two thirds of the time cannot use more than half a core")
            time.sleep(0.05)
            self.assertNotEqual(state(child.pid), "T", "stop() must leave the process running (SIGCONT)")
        finally:
            child.kill()
            child.wait()

    def test_a_worker_that_exits_ends_the_cycle(self):
        child = subprocess.Popen(["sleep", "0.1"])
        cycle = run.DutyCycle(child.pid, 20, 60)
        cycle.start()
        child.wait()
        time.sleep(0.2)
        cycle.stop()  # returns without raising once the process is gone
        self.assertFalse(cycle.is_alive())


class EventReaderTests(unittest.TestCase):
    def test_reads_what_tensorboards_writer_wrote(self):
        try:
            from tensorboard.compat.proto import event_pb2, summary_pb2
            from tensorboard.summary.writer.event_file_writer import EventFileWriter
        except ImportError as e:
            self.skipTest(f"tensorboard not installed ({e})")
        with tempfile.TemporaryDirectory() as folder:
            writer = EventFileWriter(folder)
            points = [(1796487745.25, 469, 0.9635, "validation/accuracy"), (1796487746.5, 469, 0.12, "validation/loss"),
                      (1796487747.75, 938, 0.9754, "validation/accuracy")]
            for wall, step, value, tag in points:
                summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=value)])
                writer.add_event(event_pb2.Event(wall_time=wall, step=step, summary=summary))
            writer.close()
            got = run.read_scalars(folder, "validation/accuracy")
        self.assertEqual([(w, s) for w, s, _ in got], [(1796487745.25, 469), (1796487747.75, 938)])
        self.assertEqual([v for _, _, v in got], [struct.unpack("<f", struct.pack("<f", v))[0] for v in (0.9635, 0.9754)])

    def test_a_missing_folder_has_no_points(self):
        self.assertEqual(run.read_scalars("/nonexistent/tensorboard", "validation/accuracy"), [])


class NotesTests(unittest.TestCase):
    def test_a_refusal_keeps_psctls_last_line_without_its_prefix(self):
        e = run.PsctlFailed(["psctl", "submit"], 64, "note: something\npsctl: error: override 'training.x=1': "
                                                        "training.x: unknown field 'x' under training\n")
        self.assertEqual(e.message, "override 'training.x=1': training.x: unknown field 'x' under training")
        self.assertEqual(run.PsctlFailed(["psctl"], 3, "").message, "exit status 3")

    def test_torch_requirement_pins_a_cpu_wheel_from_find_links(self):
        tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
        with tempfile.TemporaryDirectory() as folder:
            open(os.path.join(folder, f"torch-9.1.0+cpu-{tag}-{tag}-manylinux_2_28_x86_64.whl"), "w").close()
            saved = {k: os.environ.get(k) for k in ("PIP_FIND_LINKS", "PS_BENCH_TORCH")}
            try:
                os.environ.pop("PS_BENCH_TORCH", None)
                os.environ["PIP_FIND_LINKS"] = folder
                self.assertEqual(run.torch_requirement(), "torch==9.1.0+cpu")
                os.environ["PIP_FIND_LINKS"] = os.path.join(folder, "none")
                self.assertEqual(run.torch_requirement(), "torch")
                os.environ["PS_BENCH_TORCH"] = "torch==2.5.1"
                self.assertEqual(run.torch_requirement(), "torch==2.5.1")
            finally:
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v


if __name__ == "__main__":
    unittest.main()
