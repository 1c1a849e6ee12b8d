"""Generate the embedded default toy dataset. Options: --help-all"""

from ctlearn_mlops.cli import make_default_data

if __name__ == "__main__":
    make_default_data()
