"""Command line: ``bnlint check``, ``bnlint fix``, ``bnlint rules``, ``bnlint explain``,
``bnlint verify``, ``bnlint run``.

Exit codes: 0 no findings, 1 findings (BNL001 included: a file or model that could not be
analysed), 2 a usage error, an unreadable path named on the command line, or bnlint's
own failure. User mistakes print one line, never a traceback.
"""
from __future__ import annotations

import sys
from typing import List, Optional, Sequence, Tuple

import click

from bnlint import __version__
from bnlint.config import Config, ConfigError, load_config, merge_flags, parse_input_shape
from bnlint.registry import UnknownRuleError, all_rules, rule_by_code, select_rules

__all__ = ["main", "cli"]

EXIT_CLEAN, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2


def _split_codes(values: Sequence[str]) -> Tuple[str, ...]:
    out: List[str] = []
    for v in values:
        out.extend(p for p in v.replace(" ", ",").split(",") if p)
    return tuple(out)


def _fail(message: str) -> "click.exceptions.Exit":
    click.echo(f"bnlint: error: {message}", err=True)
    return click.exceptions.Exit(EXIT_ERROR)


def _interrupted() -> "click.exceptions.Exit":
    """Ctrl-C: kill the running model workers now (not after their timeout) and exit 130."""
    from bnlint.atomic import remove_all_temporaries

    remove_all_temporaries()
    click.echo("bnlint: interrupted", err=True)
    return click.exceptions.Exit(130)


def _parse_shape_option(text: str):
    import json

    try:
        value = json.loads(text)
    except ValueError:
        # Also accept 2,3,32,32 and 2x3x32x32.
        parts = text.replace("x", ",").split(",")
        try:
            value = [int(p) for p in parts if p.strip()]
        except ValueError:
            raise ConfigError(f"--input-shape {text!r}: write e.g. 2,3,32,32 or [[2,3,32,32],[2,10]]") from None
    return parse_input_shape("--input-shape", value)


def build_config(paths, config_file, select, ignore, extend_select, timeout, input_shape) -> Config:
    config = merge_flags(load_config(paths, config_file), _split_codes(select), _split_codes(ignore),
                         _split_codes(extend_select))
    overrides = {}
    if timeout is not None:
        if timeout <= 0:
            raise ConfigError("--timeout must be a positive number of seconds")
        overrides["timeout"] = float(timeout)
    if input_shape:
        overrides["input_shape"] = _parse_shape_option(input_shape)
    return config.with_overrides(**overrides)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bnlint")
def cli() -> None:
    """bnlint: find dropout misplaced around BatchNorm and single-shuffle data loading."""


def common_options(func):
    options = [
        click.option("--select", multiple=True, help="Rule codes or prefixes to enable (e.g. BNL1,BNL201)."),
        click.option("--ignore", multiple=True, help="Rule codes or prefixes to disable."),
        click.option("--extend-select", multiple=True, help="Rule codes or prefixes to add to the selection."),
        click.option("--config", "config_file", type=click.Path(dir_okay=False), help="Use this pyproject.toml."),
        click.option("--timeout", type=float, default=None, help="Seconds allowed to import, build and trace the models of one file (default 60)."),
        click.option("--input-shape", default=None, help="Example input shape(s) for models, e.g. 2,3,32,32 or [[2,3,32,32],[2,10]]."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@cli.command()
@click.argument("paths", nargs=-1)
@common_options
@click.option("--format", "output_format", type=click.Choice(["text", "json", "sarif", "github", "junit"]), default="text", show_default=True)
@click.option("--output-file", "-o", type=click.Path(dir_okay=False, writable=True), default=None, help="Write the report to a file.")
@click.option("--verbose", "-v", is_flag=True, help="Also show info notes (e.g. blocks that could not be inspected).")
@click.option("--exit-zero", is_flag=True, help="Exit 0 even when problems are found.")
@click.option("--no-cache", is_flag=True, help="Analyse everything again; do not read or write .bnlint_cache.")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None, help="Where to keep the results cache (default: .bnlint_cache next to the config, else here).")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=None, help="Model files analysed at once (default: the number of CPUs).")
def check(paths, select, ignore, extend_select, config_file, timeout, input_shape, output_format, output_file, verbose, exit_zero, no_cache, cache_dir, jobs):
    """Check files and folders (default: the current folder)."""
    from bnlint.engine import UsageError, check_paths
    from bnlint.progress import ProgressLine
    from bnlint.report import counted, render

    paths = list(paths) or ["."]
    if _program():  # check ends with os._exit (_leave): what it parsed need not be freed
        from bnlint import lifetime

        lifetime.keep_until_exit()
    try:
        config = build_config(paths, config_file, select, ignore, extend_select, timeout, input_shape)
        rules = select_rules(config.select, config.ignore, config.extend_select)
        progress = ProgressLine(sys.stderr)
        cache = None
        if not no_cache:
            import os

            from bnlint.cache import ResultCache

            folder = cache_dir or os.path.join(config.root or ".", ".bnlint_cache")
            cache = ResultCache.for_run(folder, repr(config), (r.code for r in rules))
        try:
            # Only SARIF reports a fix's edits; the other formats say whether one exists.
            result = check_paths(paths, config, rules, progress=progress, cache=cache, jobs=jobs,
                                 plan_fixes=output_format == "sarif")
        except KeyboardInterrupt:
            raise _interrupted()
        finally:
            progress.close()
    except (ConfigError, UnknownRuleError, UsageError) as exc:
        raise _fail(str(exc))
    text = render(output_format, result.findings, verbose=verbose, files_checked=result.files_checked)
    _emit(text, output_file)
    if result.fatal:
        _leave(EXIT_ERROR)
    if counted(result.findings) and not exit_zero:
        _leave(EXIT_FINDINGS)
    _leave(EXIT_CLEAN)


def _emit(text: str, output_file: Optional[str], err: bool = False) -> None:
    """The report: into ``output_file`` (whole or not at all), else on stdout (stderr)."""
    if output_file:
        from bnlint.atomic import write_text_atomic

        try:
            write_text_atomic(output_file, text)
        except OSError as exc:
            raise _fail(f"cannot write {output_file}: {exc.strerror or exc}")
    else:
        click.echo(text, nl=False, err=err)


def _program() -> bool:
    """Run as the ``bnlint`` program (``main()`` without arguments), not from Python."""
    ctx = click.get_current_context(silent=True)
    return ctx is not None and bool((ctx.obj or {}).get("program"))


def _leave(code: int) -> None:
    """End ``bnlint check``. Run as the ``bnlint`` program (``main()`` without
    arguments), the process ends at once once the report is out and the exit handlers
    ran: tearing the interpreter down would free every parsed tree one by one, about a
    second on a large run, for nothing. Called from Python, it raises SystemExit."""
    if not _program():
        sys.exit(code)
    import atexit
    import os

    atexit._run_exitfuncs()  # e.g. the fork server's shutdown
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: what Python's own exit would ignore
            pass
    os._exit(code)


@cli.command("fix")
@click.argument("paths", nargs=-1)
@common_options
@click.option("--unsafe-fixes", is_flag=True, help="Also apply unsafe fixes (e.g. reordering an nn.Sequential renames state_dict keys).")
@click.option("--diff", "show_diff", is_flag=True, help="Print unified diffs and write nothing (exit 1 when something would change).")
@click.option("--verify", "verify_fixes", is_flag=True, help="Train before and after (as 'bnlint verify') and write a fix only when confirmed.")
@click.option("--force", is_flag=True, help="With --verify: write the fix whatever the verdict (the verdict is still shown).")
@click.option("--seeds", type=int, default=3, show_default=True, help="With --verify: training seeds (paired).")
@click.option("--epochs", type=int, default=None, help="With --verify: epochs per run (default: about 300 steps).")
@click.option("--budget", type=float, default=None, help="With --verify: time budget in seconds per verification (default 120 on CPU).")
@click.option("--device", default=None, help="With --verify: cpu, cuda or cuda:N (default: CUDA when available).")
@click.option("--report", "report_path", type=click.Path(dir_okay=False), default=None, help="With --verify: write the JSON verification report here.")
def fix(paths, select, ignore, extend_select, config_file, timeout, input_shape, unsafe_fixes, show_diff,
        verify_fixes, force, seeds, epochs, budget, device, report_path):
    """Apply fixes, each checked before the file is written (default: the current folder)."""
    from bnlint.engine import UsageError
    from bnlint.fix.report import render_fix_run
    from bnlint.fix.runner import fix_paths
    from bnlint.verify.options import VerifyError

    paths = list(paths) or ["."]
    settings = None
    try:
        config = build_config(paths, config_file, select, ignore, extend_select, timeout, input_shape)
        rules = select_rules(config.select, config.ignore, config.extend_select)
        if verify_fixes:
            from bnlint.fix.verify_step import VerifySettings, check_settings

            if show_diff:
                raise UsageError("--verify and --diff cannot be combined (--diff writes nothing)")
            settings = VerifySettings(seeds, epochs, budget, device, report_path, force, config.input_shape)
            check_settings(settings)
        elif force or report_path or device or epochs is not None or budget is not None or seeds != 3:
            raise UsageError("--force, --seeds, --epochs, --budget, --device and --report need --verify")
        run = fix_paths(paths, config, rules, unsafe=unsafe_fixes, write=not show_diff and settings is None)
    except (ConfigError, UnknownRuleError, UsageError, VerifyError) as exc:
        raise _fail(str(exc))
    if settings is not None:
        from bnlint.fix.runner import cleanup_on_signals
        from bnlint.fix.verify_step import render_verified_run, verify_fix_run

        try:
            with cleanup_on_signals():  # the fixed copies trained beside the originals
                results = verify_fix_run(run, settings)
        except OSError as exc:
            raise _fail(f"cannot write {report_path}: {exc.strerror or exc}")
        click.echo(render_verified_run(run, results), nl=False)
    else:
        click.echo(render_fix_run(run, show_diff), nl=False)
    if run.fatal:
        sys.exit(EXIT_ERROR)
    if show_diff:
        sys.exit(EXIT_FINDINGS if run.fixed else EXIT_CLEAN)
    sys.exit(EXIT_FINDINGS if run.remaining > 0 else EXIT_CLEAN)


@cli.command("rules")
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text", show_default=True)
def rules_command(output_format):
    """List every rule: code, name, default, fixable, summary."""
    rules = all_rules()
    if output_format == "json":
        import json

        click.echo(json.dumps([
            {"code": r.code, "name": r.name, "kind": r.kind.value, "severity": r.severity.value,
             "default": r.default_enabled, "fixable": r.fixable, "summary": r.summary}
            for r in rules
        ], indent=2))
        return
    rows = [("code", "name", "default", "fixable", "summary")]
    for r in rules:
        rows.append((r.code, r.name, "on" if r.default_enabled else "off", "yes" if r.fixable else "no", r.summary))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        click.echo("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4])) + "  " + row[4])


@cli.command()
@click.argument("code")
def explain(code):
    """Show the documentation of one rule (by code or name)."""
    rule = rule_by_code(code)
    if rule is None:
        raise _fail(f"unknown rule {code!r}; run 'bnlint rules' to list the codes")
    click.echo(f"# {rule.code} {rule.name}\n")
    click.echo(f"{rule.summary}\n")
    click.echo(rule.doc.strip())


@cli.command()
@click.argument("before", type=click.Path())
@click.argument("after", type=click.Path())
@click.option("--model", default=None, help="Model to compare: Name or Name(arg=1) (default: the only one).")
@click.option("--seeds", type=int, default=3, show_default=True, help="Training seeds (paired).")
@click.option("--epochs", type=int, default=None, help="Epochs per run (default: about 300 steps).")
@click.option("--budget", type=float, default=None, help="Time budget in seconds (default 120 on CPU).")
@click.option("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA when available).")
@click.option("--task", default=None, help="module:function returning (train_dataset, val_dataset[, loss]).")
@click.option("--report", "report_path", type=click.Path(dir_okay=False), default=None, help="Write the JSON report here.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None, help="Write a PNG plot (needs matplotlib).")
@click.option("--kind", type=click.Choice(["auto", "model", "shuffle"]), default="auto", show_default=True)
@click.option("--rename", multiple=True, help="OLD_PREFIX=NEW_PREFIX for parameters an unsafe fix renamed.")
@click.option("--input-shape", default=None, help="Example input shape(s), e.g. 2,3,32,32.")
def verify(before, after, model, seeds, epochs, budget, device, task, report_path, plot_path, kind, rename, input_shape):
    """Train BEFORE.py and AFTER.py side by side; exit 0 only when the change is confirmed."""
    from bnlint.verify.command import build_request, run_verify_subprocess
    from bnlint.verify.options import VerifyError

    try:
        shape = _parse_shape_option(input_shape) if input_shape else None
        request = build_request(before, after, model, seeds, epochs, budget, device, task, report_path,
                                plot_path, kind, rename, shape)
    except (VerifyError, ConfigError) as exc:
        raise _fail(str(exc))
    sys.exit(run_verify_subprocess(request))


@cli.command("run", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--format", "output_format", type=click.Choice(["text", "json", "sarif", "github", "junit"]), default="text", show_default=True)
@click.option("--output-file", "-o", type=click.Path(dir_okay=False, writable=True), default=None, help="Write the report to a file (default: stderr, after the script's own output).")
@click.option("--exit-zero", is_flag=True, help="Exit 0 when the script succeeded, even when problems are found.")
@click.option("--select", multiple=True, help="Rule codes or prefixes to enable.")
@click.option("--ignore", multiple=True, help="Rule codes or prefixes to disable.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="Use this pyproject.toml.")
@click.argument("script")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def run_command(output_format, output_file, exit_zero, select, ignore, config_file, script, args):
    """Run SCRIPT ARGS as 'python SCRIPT ARGS' would, watching its data loaders (BNL206).

    Options go before SCRIPT; everything after it is the script's. The exit status is
    the script's when it fails; else 1 when problems were found, 0 when clean."""
    import os

    from bnlint.runtime.findings import runtime_findings
    from bnlint.runtime.launch import ScriptError, check_runnable, run_script
    from bnlint.runtime.watch import Watch
    from bnlint.report import counted, render

    try:
        check_runnable(script)
        config = build_config([script], config_file, select, ignore, (), None, None)
        rules = select_rules(config.select, config.ignore, config.extend_select)
    except (ScriptError, ConfigError, UnknownRuleError) as exc:
        raise _fail(str(exc))
    cwd = os.getcwd()
    with Watch() as watch:
        status = run_script(script, args)
    record = watch.record()
    try:
        os.chdir(cwd)  # the script may have moved; paths are shown relative to where bnlint ran
    except OSError:
        pass
    findings = runtime_findings(record, rules, config, cwd)
    text = render(output_format, findings, files_checked=1)
    _emit(text, output_file, err=True)  # stdout belongs to the script
    if status != 0:
        sys.exit(status)
    sys.exit(EXIT_FINDINGS if counted(findings) and not exit_zero else EXIT_CLEAN)


def main(argv: Optional[Sequence[str]] = None) -> None:
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="bnlint", obj={"program": argv is None})
    except KeyboardInterrupt:  # outside a command (click turns the rest into "Aborted!")
        sys.exit(_interrupted().exit_code)
