"""A named pipe that blocks its reader: how tests make a decode hang, deterministically."""
from __future__ import annotations

import os
import threading


def unblock_fifo_later(fifo, after_s: float) -> threading.Timer:
    """Safety net: should the timeout not work, end the blocked read (the row then reads as an
    empty file) so the test fails on its status instead of hanging."""
    def unblock():
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:  # no reader left: the timeout worked
            pass

    timer = threading.Timer(after_s, unblock)
    timer.daemon = True
    timer.start()
    return timer
