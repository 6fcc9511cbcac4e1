"""`python -m etld` is the same as the `etld` command."""

from __future__ import annotations

import sys

from etld.cli import main

sys.exit(main())
