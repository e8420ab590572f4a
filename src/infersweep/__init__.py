"""infersweep: which inference runtime, precision, batch and image size wins on this hardware."""

import time

__version__ = "0.1.0"

# When this process imported infersweep (its first line of ours): a run's own start, before its
# first case, is timed from here (sweep.py, store meta "parent_phases").
PROCESS_START = time.monotonic()
