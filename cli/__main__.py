"""`python -m cli ...` = `basis ...` (what `basis up` uses to start its worker)."""

import sys

from cli.main import main

sys.exit(main())
