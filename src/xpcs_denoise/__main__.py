"""``python -m xpcs_denoise`` is the ``xpcs-denoise`` command."""

from .app.cli import main

raise SystemExit(main())
