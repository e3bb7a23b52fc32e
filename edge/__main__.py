import sys

if sys.version_info < (3, 11):  # as pyproject's requires-python: the service's config is read with tomllib
    sys.exit(f"ser-edge needs Python 3.11 or newer, and this is {sys.version.split()[0]}: run it with python3.11 or newer")

try:
    from edge.cli import main

    code = main()
except KeyboardInterrupt:  # Ctrl-C while the libraries were still loading, before main() could catch it
    code = 130
sys.exit(code)
