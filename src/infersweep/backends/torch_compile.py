"""torch.compile with Inductor, on the CPU and CUDA.

Compilation is setup, never latency: ``specialize`` runs the compiled model once per input shape
(dynamic=False, so each batch size gets kernels of its own, as a deployment would). Inductor's and
Triton's on-disk caches live under infersweep's cache (the executor points TORCHINDUCTOR_CACHE_DIR
and TRITON_CACHE_DIR there), so the same sweep run again does not compile from scratch.

Options: ``mode`` (default, reduce-overhead, max-autotune, max-autotune-no-cudagraphs),
``cudagraphs`` (auto = whatever the mode implies; true/false overrides it) and ``dynamic``
(false: one graph per batch size; true: the batch dimension is marked dynamic with
torch._dynamo.mark_dynamic, so one compile serves every batch of a group; dynamo still
specialises a batch of 1, which gets a graph of its own). ``info["compile_s"]`` shows what each
batch size cost to compile, ``info["fx_graph_cache"]`` what Inductor's FX-graph cache did for it
(hits, misses, bypasses): a warm run that compiles again shows misses.
"""

from __future__ import annotations

import time

from infersweep.backends.base import Backend, options_of
from infersweep.backends.torch_common import (TORCH_IMPLICIT_OPTIONS, TORCH_OPTION_DEVICES,
                                              TORCH_OPTION_MINIMUM, TORCH_OPTIONS,
                                              TORCH_PRECISIONS, TorchSession)
from infersweep.case import Case

MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


class CompiledSession(TorchSession):
    def __init__(self, model, case: Case):
        import torch

        super().__init__(model, case)
        opts = options_of(case)
        mode, cudagraphs = opts.get("mode", "default"), opts.get("cudagraphs", "auto")
        self.dynamic = opts.get("dynamic", "false") == "true"
        # dynamic=None lets mark_dynamic make the batch dimension symbolic; False forbids it.
        dynamic = None if self.dynamic else False
        # One graph per batch size: raise the recompile limit so a sweep of many sizes never falls
        # back to eager silently.
        for name in ("recompile_limit", "cache_size_limit"):
            if hasattr(torch._dynamo.config, name):
                setattr(torch._dynamo.config, name, 256)
        if cudagraphs == "auto":
            self.compiled = torch.compile(self.model, mode=mode, dynamic=dynamic)
        else:
            from torch._inductor import list_mode_options

            options = dict(list_mode_options(mode))
            options["triton.cudagraphs"] = cudagraphs == "true"
            self.compiled = torch.compile(self.model, options=options, dynamic=dynamic)
        self.shapes_compiled: dict[tuple, float] = {}
        self.fx_graph_cache: dict[str, dict[str, int]] = {}  # by batch size, as compile_s
        self.info.update({"compile_mode": mode, "cudagraphs": cudagraphs,
                          "dynamic_batch": self.dynamic})

    def place(self, batch):
        x = super().place(batch)
        if self.dynamic:
            self.torch._dynamo.mark_dynamic(x, 0)
        return x

    def specialize(self, placed) -> None:
        shape = tuple(placed.shape)
        if shape in self.shapes_compiled:
            return
        counters = self.torch._dynamo.utils.counters
        counted = counters["inductor"]
        before = dict(counted)
        start = time.perf_counter()
        # CUDA graph trees record on the first runs after compilation: three runs settle them.
        for _ in range(3):
            self.run(placed)
        self.shapes_compiled[shape] = time.perf_counter() - start
        self.info["compile_s"] = {str(k[0]): round(v, 2) for k, v in self.shapes_compiled.items()}
        after = counters["inductor"]
        if after is not counted:  # reset during the compile (the first in a process is)
            before = {}
        cache = {state: after[f"fxgraph_cache_{state}"] - before.get(f"fxgraph_cache_{state}", 0)
                 for state in ("hit", "miss", "bypass")}
        self.fx_graph_cache[str(shape[0])] = {state: n for state, n in cache.items() if n}
        self.info["fx_graph_cache"] = dict(self.fx_graph_cache)

    def forward(self, x):
        return self.compiled(x)

    def fetch(self, output):
        return super().fetch(output.clone())  # CUDA graph outputs are overwritten by the next run


def fx_graph_counts(cases) -> dict[str, int]:
    """What Inductor's FX-graph cache did over cases given as (info, batch size): hits, misses,
    bypasses summed. Each case counts its own shape only: a row's info.fx_graph_cache also
    holds the shapes its group compiled before it."""
    counts: dict[str, int] = {}
    for info, batch in cases:
        cache = (info or {}).get("fx_graph_cache")
        shape = cache.get(str(batch)) if isinstance(cache, dict) else None
        for state, n in (shape.items() if isinstance(shape, dict) else ()):
            if isinstance(n, int):
                counts[state] = counts.get(state, 0) + n
    return counts


class TorchCompile(Backend):
    def prepare(self, source, case: Case, cache) -> CompiledSession:
        return CompiledSession(source.model(), case)

    def preload(self) -> None:
        """torch.compile's first call in a process imports Dynamo's backend and Inductor: 2.4-2.9 s
        of the first group's setup on the H200 (1-1.5 s on the 2-core box), paid by every
        torch-compile worker. A call on a module that is never run does those imports and
        compiles nothing, on no device; the cache keys are computed here too."""
        super().preload()
        import torch

        torch.compile(torch.nn.Identity())
        # The keys of Inductor's caches hash torch's and Triton's sources on the first lookup
        # (0.5 s of the first shape's setup on the 2-core box: benchmarks/compile_preload.py);
        # both are memoised for the process. Private and version-dependent: where one is
        # missing, the first compile pays.
        try:
            from torch._inductor import codecache
        except Exception:
            return
        for key in ("torch_key", "triton_key"):  # triton_key hashes files; touches no device
            try:
                getattr(codecache, key)()
            except Exception:
                pass


BACKENDS = [TorchCompile(
    name="torch-compile", devices=("cpu", "cuda"), precisions=TORCH_PRECISIONS,
    packages=("torch", "torchvision"), install_hint="pip install torch torchvision",
    option_defaults={"mode": "default", "cudagraphs": "auto", "dynamic": False, **TORCH_OPTIONS},
    option_choices={"mode": MODES, "cudagraphs": ("auto", "true", "false")},
    option_devices={"cudagraphs": ("cuda",), **TORCH_OPTION_DEVICES},
    option_minimum=dict(TORCH_OPTION_MINIMUM),
    implicit_options=("dynamic", *TORCH_IMPLICIT_OPTIONS),
    memory_allocator="torch",
)]
