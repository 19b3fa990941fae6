#!/usr/bin/env python3
"""Reads a TensorBoard event file with TensorBoard's own loader and prints its scalars as JSON.

    python3 tests/read_tfevents.py EVENT_FILE

Prints one object: {"path": ..., "file_version": ..., "scalars": [{"tag", "step", "value", "wall_time"}, ...]}
in file order. Values go through the same read-time migration TensorBoard's scalar dashboard uses, so a
value that TensorBoard would not plot as a scalar is an error.

Exit status: 0 the whole file was read; 2 data loss (a truncated record or a CRC mismatch: TensorBoard's
loader stops there and only logs it, so we watch its log), with what was read still printed; 1 anything else.
"""
import json
import logging
import sys

from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.util import tb_logging, tensor_util


class DataLossWatcher(logging.Handler):
    """Collects the loader's "Truncated record" messages (it swallows DataLossError and logs at debug)."""

    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.messages = []

    def emit(self, record):
        message = record.getMessage()
        if message.startswith("Truncated record"):
            self.messages.append(message)


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 1
    path = argv[1]
    logger = tb_logging.get_logger()
    watcher = DataLossWatcher()
    logger.addHandler(watcher)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False

    file_version = None
    scalars = []
    for event in EventFileLoader(path).Load():
        if event.file_version:
            file_version = event.file_version
        for value in event.summary.value:
            plugin = value.metadata.plugin_data.plugin_name
            if plugin != "scalars":
                print(f"{path}: tag {value.tag!r} at step {event.step} is not a scalar (plugin {plugin!r})", file=sys.stderr)
                return 1
            scalars.append({"tag": value.tag, "step": event.step,
                            "value": float(tensor_util.make_ndarray(value.tensor).item()),
                            "wall_time": event.wall_time})
    print(json.dumps({"path": path, "file_version": file_version, "scalars": scalars}))
    if watcher.messages:
        for message in watcher.messages:
            print(f"data loss: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
