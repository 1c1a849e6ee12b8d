"""Convert simtel(.gz/.zst) files to DL1 HDF5 with ctapipe-process. Options: --help-all"""

from ctlearn_mlops.cli import convert

if __name__ == "__main__":
    convert()
