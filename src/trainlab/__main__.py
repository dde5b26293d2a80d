"""`python -m trainlab` is the `trainlab` command."""

import sys

from trainlab.cli import main

sys.exit(main())
