"""Write one event DL2 file (ctapipe's data model) from a run per role. Usage:
python scripts/predict_events.py --run type=<run> --run energy=<run> --run geometry=<run> --output data/dl2/events.dl2.h5
Options: --help-all"""

from ctlearn_mlops.cli import events

if __name__ == "__main__":
    events()
