"""alexnet-deploy's benchmarks: AlexNet latency and throughput per backend, device and batch size,
beside the physical floor set by the machine's measured matmul rate and memory bandwidth.

    alexnet-bench --devices cpu --batch-sizes 1,8,32 --json out.json --markdown out.md --plot out.png

Modules: `variant` (what each backend runs: precision and options), `runners` (one per backend),
`timing` (budgets, percentiles), `machine` (description and measured limits), `roofline` (FLOPs,
weight bytes, floor), `suite` (the interleaved run), `report` (JSON/Markdown/plot), `options` and
`cli` (the console script).
"""
