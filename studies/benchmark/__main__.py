"""`python -m studies.benchmark`: see the package's docstring."""

from studies.benchmark import main

main()
