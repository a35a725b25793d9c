"""`paperzoo`: one command with the verbs a researcher guesses. Every error is one line naming what to fix."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from components.core.errors import ConfigError, PaperzooError

EXAMPLES = """examples:
  paperzoo prepare images digits                       # scikit-learn's digits -> data/images/digits
  paperzoo run uba                                     # the smoke preset from params.yaml
  paperzoo run uba --set schedule.phi=0.5 --set optimizer=lion --seed 1
  paperzoo run uba --preset paper --set budget=1000    # paper-scale model, shorter budget
  paperzoo run uba --resume runs/uba/20261123-101500-1a2b3c4d-s0
  paperzoo sweep uba_phi --grid schedule.phi=0.5,2 --seeds 0
  paperzoo run uba --backend torchrun --profile cpu-ddp2      # 2 processes, DDP over gloo
  paperzoo run uba --backend submitit --profile slurm-cpu     # a SLURM job
  paperzoo sweep uba_phi --backend ray                        # Ray Tune with ASHA
  paperzoo sweep uba_phi --backend submitit --profile slurm-cpu --detach   # submit, return; then:
  paperzoo status                                      # the latest sweep: trial, state, step/budget, ETA
  paperzoo logs runs/sweeps/uba_phi/<time> --trial 3 -f
  paperzoo cancel runs/sweeps/uba_phi/<time>           # scancel / SIGTERM what runs, record it
  paperzoo collect runs/sweeps/uba_phi/<time>          # the summary of what finished so far
  paperzoo sweep uba_phi                               # again: runs only what no earlier run completed
  paperzoo compare runs/uba/<run-a> runs/uba/<run-b>   # differing config keys and final metrics
  paperzoo gc --yes                                    # checkpoints of completed runs, unreferenced runs
  paperzoo config uba --set schedule.name=cosine       # print the resolved config
  paperzoo list                                        # components, presets, sweeps, datasets
  paperzoo report                                      # reports/index.html
  paperzoo publish runs/uba/<run-dir> --repo-id my-lab/uba-digits   # to the Hub (or published/ without a token)
"""


def build_parser() -> argparse.ArgumentParser:
    def common(defaults: bool) -> argparse.ArgumentParser:
        """--params, --data-dir and --run-root, accepted before or after the verb."""
        shared = argparse.ArgumentParser(add_help=False)
        default = (lambda value: value) if defaults else (lambda value: argparse.SUPPRESS)
        shared.add_argument(
            "--params", type=Path, default=default(Path("params.yaml")), help="experiment choices (params.yaml)"
        )
        shared.add_argument("--data-dir", type=Path, default=default(Path("data")), help="prepared-data root (data/)")
        shared.add_argument(
            "--run-root", type=Path, default=default(Path("runs")), help="where run directories go (runs/)"
        )
        return shared

    parser = argparse.ArgumentParser(
        prog="paperzoo",
        description=__doc__,
        epilog=EXAMPLES,
        parents=[common(True)],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    after_verb = [common(False)]

    prepare = verbs.add_parser("prepare", parents=after_verb, help="prepare a dataset: paperzoo prepare images digits")
    prepare.add_argument("kind", help="images, tokens, series, video, ... (or the full name images/digits)")
    prepare.add_argument("name", nargs="?", help="a dataset named in params.yaml's datasets (e.g. digits)")
    prepare.add_argument(
        "--set",
        dest="options",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a prepare option, e.g. --set repeat=40",
    )

    verify = verbs.add_parser("verify", parents=after_verb, help="check every shard's sha256 against its manifest")
    verify.add_argument("name", nargs="?", help="one dataset, e.g. images/digits (default: all)")

    def add_run_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--preset", help="test, smoke or paper (default: params.yaml's preset)")
        sub.add_argument(
            "--set",
            dest="overrides",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a config key, e.g. --set schedule.phi=0.7 (repeatable)",
        )

    def add_compute_options(sub: argparse.ArgumentParser, backends: tuple[str, ...]) -> None:
        sub.add_argument(
            "--backend",
            default="local",
            choices=backends,
            help="local: this process; torchrun: N processes here; submitit: SLURM; ray: Ray Tune",
        )
        sub.add_argument("--profile", help="cluster/profiles/NAME.yaml or a path: processes, strategy, resources")
        sub.add_argument(
            "--checkpoint-every",
            type=int,
            default=0,
            metavar="STEPS",
            help="checkpoint every N optimizer steps (0: only when preempted)",
        )

    run = verbs.add_parser("run", parents=after_verb, help="run one component")
    run.add_argument("slug", nargs="?", help="the component (see `paperzoo list`)")
    add_run_options(run)
    run.add_argument("--seed", type=int, default=0)
    add_compute_options(run, ("local", "torchrun", "submitit"))
    run.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue an unfinished run")
    run.add_argument("--out", type=Path, metavar="DIR", help="write to this fixed directory (DVC's stages)")

    def verb(name: str, help: str, examples: str, description: str = "") -> argparse.ArgumentParser:
        return verbs.add_parser(
            name,
            parents=after_verb,
            help=help,
            description=description or help,
            epilog="examples:\n" + examples,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    sweep = verb(
        "sweep",
        "run a named sweep from params.yaml",
        "  paperzoo sweep uba_phi --grid schedule.phi=0.5,2 --seeds 0\n"
        "  paperzoo sweep uba_phi --backend submitit --profile slurm-cpu --detach\n"
        "  paperzoo sweep uba_phi --seeds 0,1,2      # more seeds: only the new ones run\n"
        "  paperzoo sweep uba_phi --rerun            # every trial again\n"
        "  paperzoo sweep uba_phi --estimate --backend submitit --profile slurm-cpu\n",
        "Run a named sweep. Trials that an earlier run of this sweep completed (same resolved config, seed, code "
        "and lock digest, data) are reported from there, preempted or interrupted ones resume from their "
        "checkpoints, and trials still running under an earlier driver are waited for.",
    )
    sweep.add_argument("name")
    add_compute_options(sweep, ("local", "torchrun", "submitit", "ray"))
    sweep.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2", help="narrow an axis")
    sweep.add_argument("--seeds", help="comma-separated seeds, e.g. 0,1")
    sweep.add_argument("--preset", help="test, smoke or paper (default: params.yaml's preset)")
    sweep.add_argument("--detach", action="store_true", help="start the driver in the background and return")
    sweep.add_argument("--rerun", action="store_true", help="run every trial again, completed ones included")
    sweep.add_argument(
        "--estimate", action="store_true", help="print trials x steps x s/step and the device-hours; run nothing"
    )
    sweep.add_argument("--into", type=Path, help=argparse.SUPPRESS)  # the sweep folder a detached driver fills

    status = verb(
        "status",
        "a sweep's trials (or one run): state, step/budget, last metric, elapsed, ETA, requeues",
        "  paperzoo status                         # the latest sweep under --run-root\n"
        "  paperzoo status runs/sweeps/uba_phi/20261205-101500\n"
        "  paperzoo status runs/uba/20261205-101500-1a2b3c4d-s0\n",
    )
    status.add_argument("path", nargs="?", type=Path, metavar="SWEEP_DIR|RUN_DIR")

    logs = verb(
        "logs",
        "a trial's job output and its metrics.jsonl (-f: follow until it ends)",
        "  paperzoo logs runs/sweeps/uba_phi/20261205-101500 --trial 3 -f\n"
        "  paperzoo logs runs/sweeps/uba_phi/20261205-101500 --trial lion\n"
        "  paperzoo logs runs/uba/20261205-101500-1a2b3c4d-s0\n",
    )
    logs.add_argument("path", type=Path, metavar="SWEEP_DIR|RUN_DIR")
    logs.add_argument("--trial", help="with a sweep folder: the trial's index or (part of) its name")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing until the trial ends")

    cancel = verb(
        "cancel",
        "cancel what of a sweep is queued or running (scancel, SIGTERM) and record it",
        "  paperzoo cancel runs/sweeps/uba_phi/20261205-101500\n",
    )
    cancel.add_argument("path", type=Path, metavar="SWEEP_DIR")

    collect = verb(
        "collect",
        "a sweep's summary from whatever has finished, the missing trials listed",
        "  paperzoo collect runs/sweeps/uba_phi/20261205-101500\n",
    )
    collect.add_argument("path", type=Path, metavar="SWEEP_DIR")

    gc = verb(
        "gc",
        "remove checkpoints of completed runs and run folders nothing refers to (shows what first)",
        "  paperzoo gc            # what it would remove, and the space\n  paperzoo gc --yes      # remove it\n",
    )
    gc.add_argument("--yes", action="store_true", help="remove (without it: only show)")
    gc.add_argument("--reports", type=Path, default=Path("reports"), help="the report folder whose runs are kept")

    compare = verb(
        "compare",
        "config keys that differ and final metrics, side by side, for runs or sweeps",
        "  paperzoo compare runs/uba/<run-a> runs/uba/<run-b>\n"
        "  paperzoo compare runs/sweeps/uba_phi/20261205-101500 --markdown > compare.md\n",
    )
    compare.add_argument("paths", nargs="+", type=Path, metavar="RUN_OR_SWEEP")
    compare.add_argument("--markdown", action="store_true", help="a markdown table instead of the terminal one")

    report = verbs.add_parser(
        "report", parents=after_verb, help="reports/index.html: the pipeline's runs, the sweeps, the one-off runs"
    )
    report.add_argument("--out", type=Path, default=Path("reports"), help="where index.html/.md go (reports/)")

    from pipelines import publish

    publish.add_arguments(verbs.add_parser("publish", parents=after_verb, help="push a run to the Hugging Face Hub"))

    serve = verbs.add_parser("serve", parents=after_verb, help="a Prefect server and the deployments, on loopback")
    serve.add_argument("--port", type=int, default=4200)
    serve.add_argument(
        "--home",
        type=Path,
        default=Path.home() / ".paperzoo" / "prefect",
        help="Prefect's home: its SQLite database and logs",
    )
    deploy = verbs.add_parser(
        "deploy",
        parents=after_verb,
        help="register the deployments on the Prefect server at PREFECT_API_URL (shared use)",
        description="Register one deployment per dataset, component and sweep of params.yaml (and publish/hub, "
        "reproduce/all) on the server at PREFECT_API_URL for a process work pool (created if missing); then "
        "`PREFECT_WORKER_QUERY_SECONDS=1 prefect worker start --pool POOL` runs them in this folder (polling every "
        "second, not Prefect's 10). Run again after editing params.yaml.",
    )
    deploy.add_argument("--pool", default="paperzoo", help="the process work pool (default: paperzoo)")

    lineage = verbs.add_parser(
        "lineage", parents=after_verb, help="what each train stage reads (DVC's lineage stage): runs/lineage/"
    )
    lineage.add_argument("--out", type=Path, default=Path("runs/lineage"))

    verbs.add_parser("list", parents=after_verb, help="components, presets, sweeps and datasets")
    config = verbs.add_parser("config", parents=after_verb, help="print a component's resolved config")
    config.add_argument("slug")
    add_run_options(config)
    return parser


def cmd_prepare(args: argparse.Namespace) -> None:
    from pipelines.operations import prepare_dataset

    name = args.kind if args.name is None else f"{args.kind}/{args.name}"
    path = prepare_dataset(name, args.options, params_file=args.params, data_dir=args.data_dir)
    print(f"prepared {name} -> {path}")


def cmd_verify(args: argparse.Namespace) -> None:
    from pipelines.datasets import verify

    names = verify(args.data_dir, args.name)
    print(f"verified {len(names)} dataset(s): {', '.join(names) or 'none found'}")


def checkpoint_steps(value: int) -> int:
    """--checkpoint-every: 0 or a positive number of optimizer steps (checked here, so the error is one line)."""
    if value < 0:
        raise ConfigError(
            f"--checkpoint-every {value}: give 0 (checkpoint only when preempted) or a positive number of steps"
        )
    return value


def seed_list(text: str | None) -> list[int] | None:
    """--seeds 0,1 -> [0, 1]; anything but comma-separated non-negative integers is one line naming it."""
    if text is None:
        return None
    seeds = []
    for part in text.split(","):
        try:
            seeds.append(int(part.strip()))
        except ValueError:
            raise ConfigError(
                f"--seeds {text}: '{part.strip()}' is not an integer seed; "
                "give comma-separated integers, e.g. --seeds 0,1"
            ) from None
        if seeds[-1] < 0:
            raise ConfigError(f"--seeds {text}: seed {seeds[-1]} is negative; seeds are integers >= 0")
    return seeds


def cmd_run(args: argparse.Namespace) -> int:
    from cluster.runner import RunFailed, RunPreempted
    from pipelines.operations import run_component

    try:
        outcome = run_component(
            args.slug,
            preset=args.preset,
            overrides=args.overrides,
            seed=args.seed,
            backend=args.backend,
            profile=args.profile,
            params_file=args.params,
            data_dir=args.data_dir,
            run_root=args.run_root,
            out=args.out,
            resume=args.resume,
            checkpoint_every=checkpoint_steps(args.checkpoint_every),
        )
    except (RunFailed, RunPreempted) as err:  # it ran, and ended failed or preempted: exit 1, its record says why
        again = f"; continue it with `paperzoo run --resume {err.run_dir}`" if err.status == "preempted" else ""
        print(f"paperzoo: error: run {err.status}: {err} (run directory {err.run_dir}{again})", file=sys.stderr)
        return 1
    print(json.dumps(outcome.metrics, indent=2, sort_keys=True))
    print(f"run directory: {outcome.run_dir}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from cluster.states import DriverDetached
    from pipelines.operations import run_named_sweep
    from pipelines.sweep import parse_grid

    seeds = seed_list(args.seeds)
    checkpoint_steps(args.checkpoint_every)
    grid = parse_grid(args.grid)
    if args.estimate:
        from pipelines.operations import estimate_sweep

        print(
            estimate_sweep(
                args.name,
                backend=args.backend,
                profile=args.profile,
                grid=grid,
                seeds=seeds,
                preset=args.preset,
                params_file=args.params,
                data_dir=args.data_dir,
                run_root=args.run_root,
            )
        )
        return 0
    if args.detach:
        from pipelines.operations import check_sweep, start_detached

        count = check_sweep(
            args.name,
            profile=args.profile,
            grid=grid,
            seeds=seeds,
            preset=args.preset,
            params_file=args.params,
            run_root=args.run_root,
        )
        argv = [arg for arg in args.argv if arg != "--detach"]
        directory, pid = start_detached(args.name, argv, args.run_root, args.backend)
        print(f"sweep {args.name}: {count} trials, driver {pid} in the background -> {directory}")
        print(f"  paperzoo status {directory}")
        print(f"  paperzoo logs {directory} --trial 0 -f")
        print(f"  paperzoo cancel {directory}")
        print(f"  paperzoo collect {directory}      # the summary of what finished")
        return 0
    try:
        outcome = run_named_sweep(
            args.name,
            backend=args.backend,
            profile=args.profile,
            grid=grid,
            seeds=seeds,
            preset=args.preset,
            params_file=args.params,
            data_dir=args.data_dir,
            run_root=args.run_root,
            checkpoint_every=args.checkpoint_every,
            rerun=args.rerun,
            directory=args.into,
        )
    except DriverDetached:  # SIGTERM on SLURM: the jobs go on (the backend printed which, and how to follow)
        return 0
    print(outcome.markdown)
    print(f"sweep directory: {outcome.directory} (summary.csv, summary.md, trials.jsonl, ledger/)")
    return sweep_exit(args.name, outcome)


def sweep_exit(name: str, outcome) -> int:
    if not outcome.failed:
        return 0
    counts: dict[str, int] = {}
    for result in outcome.failed:
        counts[result.status] = counts.get(result.status, 0) + 1
    said = ", ".join(f"{n} {status}" for status, n in counts.items())
    print(
        f"paperzoo: error: sweep {name} {outcome.status}: {len(outcome.failed)} of {len(outcome.results)} "
        f"trials did not complete ({said}); which and why: {outcome.directory / 'summary.md'}",
        file=sys.stderr,
    )
    return 1


def cmd_status(args: argparse.Namespace) -> None:
    from pipelines.ledger import STATUS_COLUMNS, format_table, latest_sweep_dir, status_rows

    path = args.path or latest_sweep_dir(args.run_root)
    heading, rows = status_rows(path)
    print(f"{heading}\n{path}\n")
    print(format_table(rows, STATUS_COLUMNS))


def cmd_logs(args: argparse.Namespace) -> None:
    from pipelines.ledger import find_record, follow_logs

    record, run_dir = find_record(args.path, args.trial)

    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    follow_logs(record, run_dir, args.follow, write)


def cmd_cancel(args: argparse.Namespace) -> None:
    from pipelines.operations import cancel_sweep

    said = cancel_sweep(args.path)
    print("; ".join(said) or "nothing was queued or running")
    print(f"recorded in {args.path / 'ledger'}; summary of what finished: {args.path / 'summary.md'}")


def cmd_collect(args: argparse.Namespace) -> int:
    from pipelines.sweep import collect_sweep

    outcome = collect_sweep(args.path)
    print(outcome.markdown)
    print(f"sweep directory: {outcome.directory} (summary.csv, summary.md, trials.jsonl)")
    return 0


def cmd_gc(args: argparse.Namespace) -> None:
    import shutil

    from pipelines.operations import gc_candidates

    found = gc_candidates(args.run_root, args.reports)
    total = sum(size for _, _, size in found)
    for path, why, size in found:
        print(f"{size / 2**20:9.1f} MiB  {path}  ({why})")
    if not args.yes:
        print(f"would free {total / 2**20:.1f} MiB in {len(found)} folders; `paperzoo gc --yes` removes them")
        return
    for path, _, _ in found:
        shutil.rmtree(path, ignore_errors=True)
    print(f"freed {total / 2**20:.1f} MiB ({len(found)} folders)")


def cmd_compare(args: argparse.Namespace) -> None:
    from pipelines.compare import compare

    print(compare(args.paths, markdown=args.markdown))


def cmd_report(args: argparse.Namespace) -> None:
    from pipelines.operations import write_report

    path = write_report(params_file=args.params, run_root=args.run_root, out_dir=args.out)
    print(f"report: {path}")


def cmd_publish(args: argparse.Namespace) -> None:
    from pipelines.publish import cmd_publish

    cmd_publish(args)


def cmd_serve(args: argparse.Namespace) -> None:
    from pipelines.serve import serve

    serve(args.home, args.port, args.params)


def cmd_deploy(args: argparse.Namespace) -> None:
    from pipelines.deployments import deployment_specs, register
    from pipelines.params import load_params

    specs = deployment_specs(load_params(args.params))
    created = register(specs, pool=args.pool)
    print(f"{'created work pool' if created else 'work pool'} {args.pool} (process); {len(specs)} deployments:")
    print("  " + ", ".join(spec.full_name for spec in specs))
    print(
        "start a worker (it runs the flows in this folder): "
        f"PREFECT_WORKER_QUERY_SECONDS=1 prefect worker start --pool {args.pool}"
    )
    print("then: prefect deployment run 'train/uba' --param preset=smoke --watch")


def cmd_lineage(args: argparse.Namespace) -> None:
    from pipelines.lineage import write_lineage
    from pipelines.params import load_params

    changes = write_lineage(load_params(args.params), args.data_dir, args.out)
    for slug, parts in changes.items():
        print(f"{slug}: inputs changed: {'; '.join(parts)}")
    print(f"lineage -> {args.out} ({len(changes)} component(s) with changed inputs)")


def cmd_list(args: argparse.Namespace) -> None:
    from components.registry import REGISTRY, component_summary
    from pipelines.params import dataset_specs, load_params

    params = load_params(args.params) if args.params.is_file() else {}
    print("components:")
    for slug in sorted(REGISTRY):
        summary = component_summary(slug)  # read from the source: importing 21 components costs seconds
        print(f"  {slug:20s} presets: {', '.join(summary.presets)}; datasets: {', '.join(summary.datasets)}")
    print(f"default preset: {params.get('preset', 'smoke')}")
    print("sweeps:")
    for name, sweep in (params.get("sweeps") or {}).items():
        axes = ", ".join(f"{k} {v}" for k, v in (sweep.get("grid") or {}).items())
        print(f"  {name:20s} {sweep.get('component')}: {axes}; seeds {sweep.get('seeds', [0])}")
    print("datasets:")
    for name, spec in dataset_specs(params).items():
        state = "prepared" if (args.data_dir / name / "manifest.json").is_file() else "not prepared"
        print(f"  {name:20s} {spec} ({state})")


def cmd_config(args: argparse.Namespace) -> None:
    from components.core.config import config_to_yaml, resolve_config
    from components.registry import get_component
    from pipelines.params import load_params

    params = load_params(args.params)
    component = get_component(args.slug)
    cfg = resolve_config(component, args.preset or params.get("preset", "smoke"), params.get(args.slug), args.overrides)
    print(config_to_yaml(cfg), end="")


COMMANDS = {
    "prepare": cmd_prepare,
    "verify": cmd_verify,
    "run": cmd_run,
    "sweep": cmd_sweep,
    "status": cmd_status,
    "logs": cmd_logs,
    "cancel": cmd_cancel,
    "collect": cmd_collect,
    "gc": cmd_gc,
    "compare": cmd_compare,
    "report": cmd_report,
    "publish": cmd_publish,
    "serve": cmd_serve,
    "deploy": cmd_deploy,
    "lineage": cmd_lineage,
    "list": cmd_list,
    "config": cmd_config,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # what a detached driver is started with
    try:
        code = COMMANDS[args.verb](args)  # cmd_run and cmd_sweep return 1 when what ran failed
    except PaperzooError as err:
        print(f"paperzoo: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `paperzoo list | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("paperzoo: interrupted", file=sys.stderr)
        return 130
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
