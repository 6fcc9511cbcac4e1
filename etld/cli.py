"""The `etld` command line: a subcommand per task, each with its own --help.

Core subcommands live in `etld/commands/core.py`; every module in
`etld/commands/` exposes `register(subparsers)`, so adding a command is adding a
module. Exit codes: 0 success, 1 runtime failure, 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

import etld.commands
from etld import __version__
from etld.config import ConfigError, load_config
from etld.errors import EtldError
from etld.logs import configure_logging


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="etld",
        description="etld: Jira, GitHub and REST data into PostgreSQL through RabbitMQ.",
    )
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="config file (default: $ETLD_CONFIG, else ./etld.toml, else built-in defaults)",
    )
    parser.add_argument(
        "--log-level", choices=("debug", "info", "warning", "error"), help="override logging.level"
    )
    parser.add_argument("--version", action="version", version=f"etld {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    modules = sorted(m.name for m in pkgutil.iter_modules(etld.commands.__path__))
    # core first so `etld --help` lists run/migrate/check-config/demo at the top
    for name in sorted(modules, key=lambda n: (n != "core", n)):
        importlib.import_module(f"etld.commands.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "no_config", False):
        args.config_obj = None
    else:
        try:
            args.config_obj = load_config(args.config)
        except ConfigError as exc:
            if getattr(args, "reports_config_errors", False):
                args.config_obj = exc
            else:
                for problem in exc.problems:
                    print(f"etld: config: {problem}", file=sys.stderr)
                return 2
    cfg = args.config_obj
    level = args.log_level or (cfg.logging.level if hasattr(cfg, "logging") else "info")
    fmt = cfg.logging.format if hasattr(cfg, "logging") else "auto"
    configure_logging(level, fmt)
    try:
        code: int = args.func(args)
    except EtldError as exc:
        print(f"etld: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code
