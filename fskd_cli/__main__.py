"""``python -m fskd_cli`` runs the ``fskd`` command."""

from .cli import main

main()
