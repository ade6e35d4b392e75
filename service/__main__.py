"""`python -m service`: the same commands as `line-auth-bff`."""

from .cli import main

raise SystemExit(main())
