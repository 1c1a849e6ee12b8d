"""IRFs (GADF) and point-source sensitivity of the CNN and classical reconstructions of an event DL2 file.
Usage: python scripts/compute_irf.py --input data/dl2/irf.dl2.h5 [--name NAME] [--optimise-cuts]
Options: --help-all"""

from ctlearn_mlops.cli import irf

if __name__ == "__main__":
    irf()
