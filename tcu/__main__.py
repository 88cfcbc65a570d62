"""``python -m tcu``: the ``tcu`` command."""

from tcu.cli.main import main

raise SystemExit(main())
