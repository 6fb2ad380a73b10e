"""`python -m cffaudit.cli ...`: kept working for scripts written before `python -m cffaudit`."""

import sys

from cffaudit.cli import main

if __name__ == "__main__":
    sys.exit(main())
