"""GADF DL3 of observed runs with the IRFs of compute_irf.py, one set per reconstruction. Options: --help-all"""

from ctlearn_mlops.cli import dl3

if __name__ == "__main__":
    dl3()
