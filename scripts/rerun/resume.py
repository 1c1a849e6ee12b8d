"""Resume an unfinished run from its last finished epoch (after kill -9, node failure, Ctrl-C, time limit).
Usage: python scripts/rerun/resume.py --run models/<task>/<run>"""

from ctlearn_mlops.tools.runs import resume_main

if __name__ == "__main__":
    resume_main()
