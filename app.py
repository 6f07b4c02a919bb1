"""`python app.py [--checkpoint C] [--port P] [--share]`: the Gradio viewer (same as `nvs app`)."""

import sys

from nvs.commands.cli import main

if __name__ == "__main__":
    sys.exit(main(["app", *sys.argv[1:]]))
