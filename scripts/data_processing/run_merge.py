"""Merge compatible DL1 files into one (ctapipe's merge tool, with checks). Options: --help-all"""

from ctlearn_mlops.cli import merge

if __name__ == "__main__":
    merge()
