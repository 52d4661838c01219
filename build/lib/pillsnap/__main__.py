"`python -m pillsnap …` is the `pillsnap` command (nbs/08b_run.cli): how the stage launcher, the advisor and the service's harness start it."
import sys

from pillsnap.cli import main

if __name__ == '__main__': sys.exit(main())
