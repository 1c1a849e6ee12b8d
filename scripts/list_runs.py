"""List runs with their key settings, state and headline metrics.
Usage: python scripts/list_runs.py [--task energy] [--csv]"""

from ctlearn_mlops.tools.runs import list_main

if __name__ == "__main__":
    list_main()
