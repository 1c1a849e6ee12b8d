"""Predict a trained run on the test data and write its DL2 table.
Usage: python scripts/test_model.py --config configs/energy.yaml --run <run name|directory|latest>
Options: --help-all"""

from ctlearn_mlops.cli import predict

if __name__ == "__main__":
    predict()
