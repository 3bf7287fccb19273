"""The parameters of :func:`dffbatch.depth_from_focus`: names, choices and defaults.

No kernels and no Numba here: the batch runner's parent process (configs, discovery,
scheduling, the run store, the report) imports this, not the kernels, and stays small
and quick to start. The kernel modules take their choice lists from here, and
``tests/test_core.py`` checks them against the registries they name.
"""

#: Focus measures (:mod:`dffbatch.stages.measure`), named as in Pertuz et al. 2013.
MEASURES = ("sml", "lape", "lapv", "lapd", "teng", "tenv", "glva", "wavs")
#: Sub-frame depth interpolation (:mod:`dffbatch.stages.depth`).
INTERPOLATIONS = ("gaussian", "parabolic", "none")
#: All-in-focus construction (:mod:`dffbatch.stages.composite`; hybrid: :mod:`dffbatch.stages.hybrid`;
#: pyramid: :mod:`dffbatch.stages.fusion`).
COMPOSITES = ("select", "interpolate", "hybrid", "pyramid")
#: The post-stream stages, in the order the docs list them (:data:`dffbatch.stages.post.REFINERS`).
REFINES = ("none", "median", "bilateral", "sgm", "wls")
#: Alignment models (:mod:`dffbatch.stages.align`).
ALIGN_MODES = ("none", "translation", "similarity", "affine", "auto")

#: Confidence (the probability that the depth is within a frame of the truth,
#: :mod:`dffbatch.stages.confidence`) below which a pixel counts as "low confidence": more
#: likely wrong than right. The report's share, ``summary.csv`` and the plots' grey use it.
LOW_CONFIDENCE = 0.5

#: ``refine_strength`` when None: the bilateral filter's confidence power (8), SGM's
#: P2 (4), the WLS near solve's lambda (60; the far one 3.5x). Chosen on the renderer's suites: bilateral
#: power 2 -> 8 took the occlusion step from -23% to -27% RMSE against median-only;
#: SGM with P2 = 4 and ``window: 3`` beats the bilateral filter on the occlusion step
#: (larger P2 staircases curved surfaces); for ``wls`` see benchmarks/bench_solve.py.
STRENGTH_DEFAULT = {"bilateral": 8.0, "sgm": 4.0, "wls": 60.0}

#: Default parameters of :func:`depth_from_focus` (also the batch runner's defaults):
#: the best point of the ranked sweep ``configs/sweep.yaml`` over 8 synthetic scenes
#: (mean depth RMSE 0.623 frame against 0.810 for the original sml/3/gaussian/median 3),
#: then the global ``wls`` solve on top (0.333; benchmarks/bench_solve.py), and
#: ``hybrid`` for the all-in-focus image: ``interpolate``'s (mean PSNR 37.1 dB against
#: 35.8 for ``select``) at the finest scale, pyramid fusion at the coarser ones, which
#: removes the halo at occlusion edges (+3.3 dB in the band around a bright leaf over a
#: dark background; benchmarks/bench_halo.py); ``align: auto``, because most
#: real stacks move (70 of the 100 focus_stack stacks, both phone stacks) and auto leaves
#: a still stack's outputs byte-identical to ``none`` (benchmarks/bench_align_twins.py).
DEFAULTS = dict(measure="lapd", window=9, step=1, threshold=0.0,
                interpolation="gaussian", median=5, composite="hybrid",
                refine="wls", refine_radius=7, refine_strength=None,
                align="auto", align_reference="middle", align_crop=False)
