"""`python -m serving.cli ...` runs `omni ...`."""

from serving.cli.main import main

main()
