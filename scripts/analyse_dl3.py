"""gammapy's 1D reflected-regions analysis of the DL3 sets of create_dl3.py (CNN and classical side by side).
Options: --help-all"""

from ctlearn_mlops.cli import analyse_dl3

if __name__ == "__main__":
    analyse_dl3()
