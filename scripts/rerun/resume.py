"""Resume an unfinished run from its last finished epoch (after kill -9, node failure, Ctrl-C, time limit).
Usage: python scripts/rerun/resume.py --run models/<task>/<run>  (or --task <task> --run <run name>)"""

from ctlearn_mlops.cli import resume

if __name__ == "__main__":
    resume()
