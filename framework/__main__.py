"""``python -m framework`` is the same as the ``intentcraft`` command."""

from framework.cli.commands import main

raise SystemExit(main())
