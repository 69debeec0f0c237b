"""Layer 5 — the user's entry points: file pipelines (correlate/denoise/fit/report/batch/finetune), the report
page, the demo and the command line. May import every layer below; nothing imports it."""
