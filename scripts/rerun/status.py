"""State of the runs of a task: finished, running, resumable or failed, with the last epoch.
Usage: python scripts/rerun/status.py [--task energy] [--csv]"""

from ctlearn_mlops.tools.runs import list_main

if __name__ == "__main__":
    list_main()
