"""Write slim DL1 files with only what training reads. Options: --help-all"""

from ctlearn_mlops.tools.extract import main

if __name__ == "__main__":
    main()
