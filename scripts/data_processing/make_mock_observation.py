"""Make a mock observation of the Crab Nebula (observed-like DL1 runs from the toy production). Options: --help-all"""

from ctlearn_mlops.cli import mock_observation

if __name__ == "__main__":
    mock_observation()
