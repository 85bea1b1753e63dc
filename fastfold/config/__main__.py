"""Print the configuration an experiment file and overrides produce.

``python -m fastfold.config configs/demo.yaml model.num_recycle=1``; a user error exits with
status 2 and a one-line message, no traceback.
"""

import argparse
import sys

from fastfold.config.loader import ConfigError, dump_yaml, load_experiment


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fastfold.config", description=__doc__.splitlines()[0])
    parser.add_argument("experiment", nargs="?", help="YAML experiment file")
    parser.add_argument("overrides", nargs="*", help="dotted.key=value changes applied last")
    args = parser.parse_args(argv)
    try:
        config = load_experiment(args.experiment, args.overrides)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(dump_yaml(config), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
