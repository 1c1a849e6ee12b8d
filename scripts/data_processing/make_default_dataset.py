"""Generate the embedded default toy dataset. Options: --help-all"""

from ctlearn_mlops.tools.make_default_data import main

if __name__ == "__main__":
    main()
