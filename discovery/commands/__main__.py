"""`python -m discovery.commands ...` is `prefdisco ...`."""

from discovery.commands import main

main()
