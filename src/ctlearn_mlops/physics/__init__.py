"""Turn a DL2 table into per-task performance, next to classical baselines."""
