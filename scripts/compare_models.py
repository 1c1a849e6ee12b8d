"""Compare runs of one task (summary.csv, overlaid curves, report.html/pdf).
Usage: python scripts/compare_models.py --task energy --all [--ensemble]
Options: --help-all"""

from ctlearn_mlops.cli import compare

if __name__ == "__main__":
    compare()
