"""infersweep: which inference runtime, precision, batch and image size wins on this hardware."""

import os
import time

__version__ = "0.1.0"

# When this process imported infersweep (its first line of ours): a run's own start, before its
# first case, is timed from here (sweep.py, store meta "parent_phases").
PROCESS_START = time.monotonic()

# The compile caches the user chose before infersweep started. Importing torch._dynamo (torchvision
# does) sets TORCHINDUCTOR_CACHE_DIR in os.environ (torch's default, under /tmp): a worker's
# environment made after the parent imported it cannot tell that from the user's choice
# (run/local.py).
USER_COMPILE_CACHES = {name: os.environ[name] for name in ("TORCHINDUCTOR_CACHE_DIR",
                                                           "TRITON_CACHE_DIR")
                       if name in os.environ}
