"""Top-1 accuracy, where the data folder has one subfolder per class (the labels)."""

from __future__ import annotations

from infersweep.probes.base import Column, Probe, ProbeContext, Reading

TOP1_ACCURACY = Column("top1_accuracy", "top-1 accuracy", ".3f", in_table=False)


class Accuracy(Probe):
    name = "accuracy"
    columns = (TOP1_ACCURACY,)
    place_after = "top1_agreement"

    def after(self, ctx: ProbeContext) -> Reading:
        labels = ctx.batches.labels(ctx.case.batch_size)
        if labels is None:
            return Reading()
        classes = ctx.batches.images.classes
        if ctx.output.shape[-1] != len(classes):
            return Reading(info={"accuracy_skipped": f"model has {ctx.output.shape[-1]} classes, "
                                                     f"data has {len(classes)}"})
        return Reading({TOP1_ACCURACY.name: float((ctx.output.argmax(-1) == labels).mean())})


PROBES = [Accuracy]
