import sys

from roadie.demo import run_demo

sys.exit(run_demo("sqlite:///roadie-demo.db", small="--small" in sys.argv))
