from __future__ import annotations

import sys

from appshell.cli import main

sys.exit(main())
