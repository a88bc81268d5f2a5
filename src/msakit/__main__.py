"""`python -m msakit`."""

import sys

from msakit.cli import main

sys.exit(main())
