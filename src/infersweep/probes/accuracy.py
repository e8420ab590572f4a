"""Top-1 accuracy over the data folder, where it has one subfolder per class (the labels).

Accuracy is a property of the model, its precision and the data, not of a batch size: it is
computed once per group (model, weights, backend, precision, size, data) over the whole folder,
up to MAX_IMAGES images, with the group's own session, after the first case's timed loop, and
every case of the group reports the same figure and the count it is based on.
"""

from __future__ import annotations

import numpy as np

from infersweep.probes.base import Column, Probe, ProbeContext, Reading

TOP1_ACCURACY = Column("top1_accuracy", "top-1 accuracy", ".3f", in_table=False)
ACCURACY_IMAGES = Column("accuracy_images", "accuracy images", "d", in_table=False)
MAX_IMAGES = 1000  # a bound on the extra inference time per group; the count column says so


class Accuracy(Probe):
    name = "accuracy"
    columns = (TOP1_ACCURACY, ACCURACY_IMAGES)
    place_after = "top1_agreement"

    def __init__(self):
        self.found: Reading | None = None  # the group's figure, computed at its first case

    def after(self, ctx: ProbeContext) -> Reading:
        if ctx.batches is None or ctx.batches.images is None \
                or ctx.batches.images.labels is None:
            return Reading()
        if self.found is None:
            self.found = self._measure(ctx)
        return self.found

    def _measure(self, ctx: ProbeContext) -> Reading:
        classes = ctx.batches.images.classes
        if ctx.output.shape[-1] != len(classes):
            return Reading(info={"accuracy_skipped": f"model has {ctx.output.shape[-1]} classes, "
                                                     f"data has {len(classes)}"})
        session, case = ctx.session, ctx.case
        correct = seen = 0
        for batch, labels in ctx.batches.labelled_chunks(case.batch_size, case.image_size,
                                                         MAX_IMAGES):
            logits = np.asarray(session.fetch(session.run(session.place(batch))))
            correct += int((logits[:len(labels)].argmax(-1) == labels).sum())
            seen += len(labels)
        return Reading({TOP1_ACCURACY.name: correct / seen, ACCURACY_IMAGES.name: seen})


PROBES = [Accuracy]
