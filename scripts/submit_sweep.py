"""Submit a sweep of overrides as a SLURM job array (one run per point). Options: --help"""

import sys

from ctlearn_mlops.tools.sweep import main

if __name__ == "__main__":
    sys.exit(main())
