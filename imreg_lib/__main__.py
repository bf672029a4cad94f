"""``python -m imreg_lib register REFERENCE TEMPLATE --out result.tfm``: see :mod:`imreg_lib.cli`."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
