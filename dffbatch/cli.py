"""Command line: ``dffbatch CONFIG [--set k=v] [--dry-run] [--force]``, ``dffbatch PATH... [-o OUT]``,
``dffbatch watch CONFIG`` (or ``--watch``), ``dffbatch synth``, ``dffbatch eval``."""
from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def _run_parser():
    p = argparse.ArgumentParser(prog="dffbatch", description="Depth from focus for directories of focus stacks. "
                                "Subcommands: 'watch' (run stacks as they arrive), 'synth' (render synthetic "
                                "stacks), 'eval' (score outputs).")
    from . import __version__
    p.add_argument("--version", action="version", version=f"dffbatch {__version__}")
    p.add_argument("config", nargs="+", metavar="CONFIG | PATH",
                   help="a YAML run config (see configs/README.md), or folders and frame files to run with "
                        "the default parameters and no config")
    p.add_argument("-o", "--output", metavar="OUT",
                   help="with PATHs: the folder that receives the run folder (default: ./outputs)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="override a config value, e.g. --set params.window=[3,5]")
    p.add_argument("--dry-run", action="store_true", help="list the stacks and jobs, then exit")
    p.add_argument("--force", action="store_true", help="redo jobs that are already finished")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--watch", action="store_true",
                   help="keep watching the datasets and run each stack once it is complete (same as "
                        "'dffbatch watch CONFIG'; see the watch section of configs/README.md)")
    p.add_argument("--dask-address", metavar="ADDRESS",
                   help="run on the Dask scheduler at ADDRESS (tcp://host:8786); same as "
                        "--set execution.backend=dask --set execution.address=ADDRESS")
    return p


def _is_config(path) -> bool:
    """A YAML config rather than a frame file or a folder: by its name, or any file whose
    extension is not an image's."""
    from .batch.discover import IMAGE_EXTS
    import os
    low = path.lower()
    return low.endswith((".yaml", ".yml")) or (os.path.isfile(path) and os.path.splitext(low)[1] not in IMAGE_EXTS)


def main(argv=None) -> int:
    from .batch.schedule import quick_exit
    quick_exit()  # once per process: atexit handlers are kept in a list, a second is a no-op cost
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("--version", "-V"):
        from . import __version__
        print(f"dffbatch {__version__}")
        return 0
    if argv and argv[0] == "synth":
        from .truth.synth_cli import main as synth_main
        return synth_main(argv[1:])
    if argv and argv[0] == "eval":
        from .truth.evaluate import main as eval_main
        return eval_main(argv[1:])
    watching = bool(argv) and argv[0] == "watch"
    args = _run_parser().parse_args(argv[1:] if watching else argv)
    watching = watching or args.watch
    if args.dask_address:
        args.overrides += ["execution.backend=dask", f"execution.address={args.dask_address}"]
    from .batch.config import ConfigError, config_for_paths
    from .batch.runner import RunLockedError, run
    try:
        first = args.config[0]
        if len(args.config) == 1 and _is_config(first):
            if args.output:
                raise ConfigError(f"{first}: -o is for PATH runs; in a config, set run.output "
                                  f"(or --set run.output={args.output})")
            if watching and not args.dry_run:
                from .batch.watch import watch
                return watch(first, args.overrides, progress=not args.no_progress)
            return run(first, args.overrides, dry_run=args.dry_run, force=args.force,
                       progress=not args.no_progress)
        cfg = config_for_paths(args.config, args.output, args.overrides)
        label = "command line: dffbatch " + " ".join(args.config)
        if watching and not args.dry_run:
            from .batch.watch import watch
            return watch(label, progress=not args.no_progress, cfg=cfg)
        return run(label, dry_run=args.dry_run, force=args.force, progress=not args.no_progress, cfg=cfg)
    except ConfigError as exc:
        print(f"dffbatch: config error: {exc}", file=sys.stderr)
        return 2
    except RunLockedError as exc:
        print(f"dffbatch: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        print(f"dffbatch: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the run folder itself cannot be written (full, read-only, gone)
        from .batch.runner import EXIT_DISK_FULL, _disk_full
        print(f"dffbatch: {exc.filename or 'output'}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_DISK_FULL if _disk_full(exc) else 2


if __name__ == "__main__":
    sys.exit(main())
