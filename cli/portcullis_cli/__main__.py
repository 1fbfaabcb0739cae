"""`python -m portcullis_cli` is the `portcullis` console script."""

import sys

from portcullis_cli.main import main

sys.exit(main())
