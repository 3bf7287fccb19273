"""Ground truth: synthetic focus stacks with exact depth and all-in-focus images
(``synth``, ``synth_cli``), and the metrics that score any tool's outputs against it
(``metrics``, ``evaluate``)."""
