"""Memory that is certainly new and resident in this process, for memory-probe tests.

A bytearray comes from malloc, which may hand back pages this process already holds (a long
pytest process frees and reuses a lot): then RSS, and the peak, do not move. An anonymous mmap
is always fresh pages from the kernel, and writing one byte per page makes each resident.
"""

import mmap

PAGE = mmap.PAGESIZE


def resident_block(mb: int) -> mmap.mmap:
    """``mb`` MiB of fresh anonymous memory, every page touched; close() gives it back."""
    block = mmap.mmap(-1, mb << 20)
    for offset in range(0, mb << 20, PAGE):
        block[offset] = 1
    return block
