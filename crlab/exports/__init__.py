"""Exports of crlab's matrices and results for other systems: KCIDB JSON (kcidb.py) and LAVA job
definitions (lava.py).  `harness.py export kcidb [RUN]` / `harness.py export lava CONFIG`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from crlab.model import EXIT_INCOMPLETE, EXIT_PASS


def cmd_export(args: Any) -> int:
    from crlab.errors import UserError

    if args.what == "kcidb":
        import jsonschema

        from crlab.exports.kcidb import kcidb_data, validate
        from crlab.paths import DEFAULT_RESULTS_DIR
        from crlab.results import ResultStore

        store = ResultStore(Path(args.results) if args.results else DEFAULT_RESULTS_DIR)
        run = store.open_run(args.source or "latest")
        data = kcidb_data(run.info(), run.results(), run.dir)
        try:
            version = validate(data)
        except jsonschema.ValidationError as exc:
            where = "/".join(str(p) for p in exc.absolute_path)
            print(f"KCIDB export of run {run.run_id} does not validate at {where or '(top)'}: {exc.message}")
            return EXIT_INCOMPLETE
        out = Path(args.output) if args.output else run.dir / "kcidb.json"
        out.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        print(f"{out}: {len(data['checkouts'])} checkout(s), {len(data['builds'])} build(s), "
              f"{len(data['tests'])} test(s); valid KCIDB {version} (kcidb-io)")
        return EXIT_PASS
    from crlab.cli import _load, ensure_host
    from crlab.exports.lava import export_lava

    if not args.source:
        raise UserError("export lava needs a matrix config: harness.py export lava CONFIG")
    cfg = _load(Path(args.source))
    if cfg is None:
        return EXIT_INCOMPLETE
    if not ensure_host(cfg):
        return EXIT_INCOMPLETE
    out_dir = Path(args.output) if args.output else Path("lava-jobs") / cfg.path.stem
    print(f"LAVA job definitions for {cfg.path} in {out_dir}:")
    export = export_lava(cfg, out_dir, base_url=args.base_url)
    for spec, why in export.skipped:
        print(f"  {spec.job_id}: skipped ({why})")
    print(f"{len(export.jobs)} job(s), {len(export.skipped)} skipped; device dictionaries in {out_dir / 'devices'}; "
          f"run one locally: /usr/bin/lava-run --dispatcher {export.dispatcher} --device DEVICE --job-id N "
          "--output-dir DIR JOB")
    return EXIT_PASS


def add_arguments(sub: Any) -> None:
    export = sub.add_parser("export", help="`export kcidb [RUN]`: a run as KCIDB JSON; `export lava CONFIG`: "
                            "one LAVA job definition per matrix cell")
    export.add_argument("what", choices=["kcidb", "lava"])
    export.add_argument("source", nargs="?", help="kcidb: run id (default latest); lava: matrix YAML")
    export.add_argument("-o", "--output", help="kcidb: file (default <run>/kcidb.json); lava: directory "
                        "(default lava-jobs/<config name>)")
    export.add_argument("--results", help="kcidb: results directory (default results/)")
    export.add_argument("--base-url", help="lava: where the lab fetches kernels and initramfs images "
                        "(default: file:// paths of crlab's cache)")
    export.set_defaults(func=cmd_export)
