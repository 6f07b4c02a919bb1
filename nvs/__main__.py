"""`python -m nvs ...` runs the `nvs` command (the form `accelerate launch -m nvs train ...` needs)."""

import sys

from nvs.commands.cli import main

if __name__ == "__main__":
    sys.exit(main())
