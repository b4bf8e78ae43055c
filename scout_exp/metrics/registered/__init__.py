"""The built-in metrics, one module each; every module here is imported on the first registry lookup
(:data:`scout_exp.metrics.base.METRICS`), so a new file registers itself without an import line."""
