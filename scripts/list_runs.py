"""List runs with their key settings, state and headline metrics.
Usage: python scripts/list_runs.py [--task energy] [--csv]"""

from ctlearn_mlops.cli import runs

if __name__ == "__main__":
    runs()
