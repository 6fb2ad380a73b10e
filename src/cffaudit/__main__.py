"""`python -m cffaudit ...`: the same command line as the `cffaudit` script (same
one-line errors and exit statuses), for environments where the script is not on PATH."""

import sys

from cffaudit.cli import main

if __name__ == "__main__":
    sys.exit(main())
