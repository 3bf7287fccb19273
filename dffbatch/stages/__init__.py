"""What a stack flows through, one module per stage.

======================  =====================================================================
``read``, ``hyperstack``  frames from files (PNG, JPEG, TIFF; microscopy hyperstacks)
``align``               registration: estimated in a first pass, then the grid every later
                        stage sees
``measure``             focus measure per pixel (Numba kernels)
``depth``               running best frame, second peak, sub-frame depth, evidence
``composite``           all-in-focus image (``select``, ``interpolate``)
``fusion``              all-in-focus by Laplacian-pyramid fusion (``pyramid``)
``fused``               measure, depth and composite fused over bands of rows: the
                        implementation of that stage group on unaligned frames
``post``                the registry of post-stream stages (``refine`` modes), over
                        ``solve`` (global WLS), ``refine`` (median, bilateral), ``sgm``
``write``               atomic TIFF/PNG/JSON outputs
``base``, ``plan``      the stage interface, and the plan that composes the stages
======================  =====================================================================

``_median_networks`` is generated code (``tools/gen_median_network.py``).
"""
