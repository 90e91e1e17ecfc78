"""``python -m tesp_cwl``: the same as ``tesp-cwl``."""

import sys

from tesp_cwl.cli import main

sys.exit(main())
