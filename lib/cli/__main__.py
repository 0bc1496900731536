"""`python -m aclaudio.cli ...` (as torchrun starts the command): the `aclaudio` command."""

import sys

from aclaudio.cli import main

if __name__ == "__main__":
    sys.exit(main())
