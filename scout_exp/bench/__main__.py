"""``python -m scout_exp.bench {data,train,explain,explain_e2e,metrics,verify}``: run one benchmark, print its JSON result."""

from __future__ import annotations

import argparse
import importlib
import json

BENCHES = ("data", "train", "explain", "explain_e2e", "metrics", "verify")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m scout_exp.bench", description=__doc__)
    parser.add_argument("name", choices=BENCHES, help="which benchmark to run")
    parser.add_argument(
        "--pairs", help="explain_e2e only: comma-separated numbers of pairs, e.g. 100,2000 (the default)"
    )
    args = parser.parse_args()
    options = {}
    if args.pairs is not None:
        if args.name != "explain_e2e":
            parser.error("--pairs applies to explain_e2e only")
        try:
            options["pairs"] = tuple(int(n) for n in args.pairs.split(","))
        except ValueError:
            parser.error(f"--pairs takes comma-separated integers, got {args.pairs!r}")
    try:
        result = importlib.import_module(f"scout_exp.bench.{args.name}").main(**options)
    except ValueError as err:
        parser.error(str(err))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
