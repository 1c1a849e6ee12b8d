"""Submit a sweep of overrides as a SLURM job array (one run per point). Options: --help"""

from ctlearn_mlops.cli import sweep

if __name__ == "__main__":
    sweep()
