"""Train a CTLearn model for one task config. Usage: python scripts/train_model.py --config configs/energy.yaml
Options: --help-all"""

from ctlearn_mlops.stop import catch_stop_signals

if __name__ == "__main__":
    catch_stop_signals()  # before TensorFlow loads: a batch system may warn during start-up
    from ctlearn_mlops.tools.train import main

    main()
