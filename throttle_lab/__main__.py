"""``python -m throttle_lab`` runs the command line."""

from throttle_lab.cli import main

main()
