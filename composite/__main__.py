"""Entry point: `python -m composite ...` (see composite/cli.py)."""

from composite.cli import main

raise SystemExit(main())
