"""``python -m scout_exp.sweeps collect DIR [--metric NAME]``, ``... leaderboard DIR [--metric NAME]`` and
``python -m scout_exp.sweeps check SWEEP.yaml``."""

from __future__ import annotations

import argparse
import sys

from scout_exp.errors import UserError


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the sub-command; a user error is one ``error:`` line and status 2."""
    parser = argparse.ArgumentParser(prog="python -m scout_exp.sweeps", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    collect_cmd = commands.add_parser("collect", help="table (CSV, Markdown) and plot of a multirun's jobs")
    collect_cmd.add_argument("dir", help="a multirun folder, e.g. outputs/train/multiruns/<time>")
    collect_cmd.add_argument(
        "--metric", default=None, help="column to plot (default: the runs' optimized_metric, else val_acc or precision)"
    )
    collect_cmd.add_argument("--out", default=None, help="folder for results.csv/.md/.png (default: DIR)")
    collect_cmd.add_argument(
        "--goal",
        choices=("max", "min"),
        default=None,
        help="which value of the metric is best (default: min for losses/errors, else max)",
    )
    board_cmd = commands.add_parser(
        "leaderboard", help="explanation methods ranked by a metric, with CIs and chance rows"
    )
    board_cmd.add_argument("dir", help="an explain multirun folder, e.g. outputs/explain/multiruns/<time>")
    board_cmd.add_argument("--metric", default="precision", help="metric to sort by (default: precision)")
    board_cmd.add_argument("--columns", nargs="*", default=None, help="other metrics to show (default: all)")
    board_cmd.add_argument(
        "--out", default=None, help="folder for leaderboard.csv/.md/.png, report.html (default: DIR)"
    )
    check_cmd = commands.add_parser("check", help="check a W&B sweep YAML and compose every setting with Hydra")
    check_cmd.add_argument("sweep", help="a sweep file, e.g. configs/sweeps/train_grid.yaml")
    check_cmd.add_argument("--limit", type=int, default=64, help="check at most this many settings")
    args = parser.parse_args(argv)
    try:
        if args.command == "collect":
            from scout_exp.sweeps.collect import best_note, best_row, collect, setting_label

            results = collect(args.dir, metric=args.metric, out_dir=args.out, goal=args.goal)
            failed = [r for r in results.rows if r["status"] != "ok"]
            print(f"{len(results.rows)} jobs ({len(failed)} not ok); metric: {results.metric}")
            best = best_row(results)
            if best is not None:  # the best pick, and whether it ties or is at chance
                print(f"best: {setting_label(best, results.varying)}{best_note(results)}")
            for path in results.files.values():
                print(path)
        elif args.command == "leaderboard":
            from scout_exp.sweeps.leaderboard import leaderboard, read_verdict

            files = leaderboard(args.dir, metric=args.metric, columns=args.columns, out_dir=args.out)
            for path in files.values():
                print(path)
            print(read_verdict(files["md"]))  # the best setting, and whether it ties or is at chance
        else:
            from scout_exp.sweeps.wandb_sweep import check_sweep

            commands_run = check_sweep(args.sweep, limit=args.limit)
            for argv_run in commands_run:
                print(" ".join(argv_run))
            print(f"ok: {len(commands_run)} settings compose")
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
