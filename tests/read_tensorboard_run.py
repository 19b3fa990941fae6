#!/usr/bin/env python3
"""Reads a folder of TensorBoard event files (one run) as TensorBoard does and prints its scalars as JSON.

    python3 tests/read_tensorboard_run.py [--legacy] RUN_DIRECTORY

Loads every event file in the folder, in name order, with TensorBoard's EventAccumulator and its defaults
(purge_orphaned_data on: a SessionLog.START marks a restart and drops the points at or after its step read
before it), keeping every point rather than a sample. Without --legacy it is the accumulator TensorBoard's
own server uses (plugin_event_accumulator); with it, the older one (event_accumulator) that scripts use.

Prints one object: {"directory": ..., "scalars": {TAG: [{"step", "value"}, ...], ...}}, each tag's points in
the order the accumulator keeps them. Exit status: 0 read; 1 anything else.
"""
import json
import sys

from tensorboard.backend.event_processing import event_accumulator, plugin_event_accumulator
from tensorboard.util import tensor_util


def main(argv):
    arguments = argv[1:]
    legacy = "--legacy" in arguments
    paths = [a for a in arguments if a != "--legacy"]
    if len(paths) != 1:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 1
    directory = paths[0]
    scalars = {}
    if legacy:
        accumulator = event_accumulator.EventAccumulator(directory, size_guidance={event_accumulator.SCALARS: 0})
        accumulator.Reload()
        for tag in accumulator.Tags()[event_accumulator.SCALARS]:
            scalars[tag] = [{"step": s.step, "value": float(s.value)} for s in accumulator.Scalars(tag)]
    else:
        accumulator = plugin_event_accumulator.EventAccumulator(
            directory, size_guidance={plugin_event_accumulator.TENSORS: 0})
        accumulator.Reload()
        for tag in accumulator.Tags()[plugin_event_accumulator.TENSORS]:
            scalars[tag] = [{"step": t.step, "value": float(tensor_util.make_ndarray(t.tensor_proto).item())}
                            for t in accumulator.Tensors(tag)]
    print(json.dumps({"directory": directory, "scalars": scalars}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
