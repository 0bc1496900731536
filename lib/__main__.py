"""`python -m aclaudio`: the `aclaudio` command, where the console script is not on PATH."""

import sys

from aclaudio.cli import main

if __name__ == "__main__":
    sys.exit(main())
