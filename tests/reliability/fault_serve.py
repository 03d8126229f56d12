"""``xapi-sim serve`` whose state journal writes through ``persist.FaultyOps`` driven by a
control file (tests only): ``python fault_serve.py serve --state-dir D ...`` with
``XAPI_SIM_TEST_DISK`` naming a JSON file ``{"gen": n, "space": bytes left on the disk, or
null}``, read before every write, so a test can fill the disk and free it while the server
runs."""

from __future__ import annotations

import json
import os
import sys

from xapi_sim import cli, persist


class ControlledDisk(persist.FaultyOps):
    """The space left is set by the test (each new ``gen`` of the control file) and used up
    by writes, given back by truncation, as on a real disk."""

    def __init__(self, control):
        super().__init__()
        self.control = control
        self.gen = None

    def write(self, fd, data):
        try:
            with open(self.control) as fh:
                ctl = json.load(fh)
        except (OSError, ValueError):
            ctl = {}
        if ctl.get("gen") != self.gen:
            self.gen = ctl.get("gen")
            with self.lock:
                self.space = ctl.get("space")
        return super().write(fd, data)


if __name__ == "__main__":
    persist.Journal.default_ops = ControlledDisk(os.environ["XAPI_SIM_TEST_DISK"])
    sys.exit(cli.main(sys.argv[1:]))
