"""Train a CTLearn model for one task config. Usage: python scripts/train_model.py --config configs/energy.yaml
Options: --help-all"""

from ctlearn_mlops.cli import train

if __name__ == "__main__":
    train()
