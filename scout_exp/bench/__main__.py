"""``python -m scout_exp.bench {data,train,explain,explain_e2e,metrics,verify}``: run one benchmark, print its JSON result."""

from __future__ import annotations

import argparse
import importlib
import json

BENCHES = ("data", "train", "explain", "explain_e2e", "metrics", "verify")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m scout_exp.bench", description=__doc__)
    parser.add_argument("name", choices=BENCHES, help="which benchmark to run")
    args = parser.parse_args()
    result = importlib.import_module(f"scout_exp.bench.{args.name}").main()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
