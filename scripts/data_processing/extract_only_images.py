"""Write slim DL1 files with only what training reads. Options: --help-all"""

from ctlearn_mlops.cli import extract_images

if __name__ == "__main__":
    extract_images()
