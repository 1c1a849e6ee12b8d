"""Physics report of a tested run (metrics.json, figures, report.pdf, report.html).
Usage: python scripts/generate_report.py --config configs/energy.yaml --run <name|directory|latest>
Options: --help-all"""

from ctlearn_mlops.cli import report

if __name__ == "__main__":
    report()
