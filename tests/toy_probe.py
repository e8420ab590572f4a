"""A probe that lives only in test code: loaded with INFERSWEEP_PLUGINS=toy_probe.

``toy_pixels`` is the number of pixels in the case's batch, something a test can predict exactly.
With TOY_PROBE_FAIL=<hook> (inherited by the workers) the probe raises in that hook, to show that
a failing probe costs a warning and never the case's timing.
"""

from __future__ import annotations

import os

from infersweep.probes import Column, Probe, ProbeContext, Reading

TOY_PIXELS = Column("toy_pixels", "pixels per batch", "d")


def pixels(batch_size: int, image_size: int) -> int:
    return batch_size * image_size * image_size


class ToyPixels(Probe):
    name = "toy"
    columns = (TOY_PIXELS,)

    def _maybe_fail(self, hook: str) -> None:
        if os.environ.get("TOY_PROBE_FAIL") == hook:
            raise RuntimeError(f"toy probe: deliberate failure in {hook}")

    def start_group(self, ctx: ProbeContext) -> None:
        self._maybe_fail("start_group")

    def begin(self, ctx: ProbeContext) -> None:
        self._maybe_fail("begin")

    def before(self, ctx: ProbeContext) -> None:
        self._maybe_fail("before")

    def after_warmup(self, ctx: ProbeContext) -> None:
        self._maybe_fail("after_warmup")

    def after(self, ctx: ProbeContext) -> Reading:
        self._maybe_fail("after")
        batch = ctx.host_batch
        return Reading({TOY_PIXELS.name: pixels(batch.shape[0], batch.shape[-1])},
                       info={"toy_batch_shape": list(batch.shape)})


PROBES = [ToyPixels]
