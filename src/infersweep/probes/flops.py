"""FLOPs per image from torch.utils.flop_counter at the real input shape (FLOPs = 2 x MACs)."""

from __future__ import annotations


def gflops_per_image(model, image_size: int) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, 3, image_size, image_size)
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(x)
    return counter.get_total_flops() / 1e9
