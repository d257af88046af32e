"""Conventions every subcommand shares: model selection, --json output, errors and exit codes.

Exit codes: 0 success; 1 a check failed (mismatch, accuracy gate); 2 bad input or usage, reported
as one line naming the file, field or value (``--debug`` shows the traceback instead).
"""

import json
import sys

from spikeforge.model import ARCHITECTURES, OVERRIDABLE, PRESETS, make_config

__all__ = ["EXIT_OK", "EXIT_CHECK_FAILED", "EXIT_USAGE", "CheckFailed", "add_model_args",
           "add_output_args", "config_from_args", "parse_overrides", "Reporter"]

EXIT_OK, EXIT_CHECK_FAILED, EXIT_USAGE = 0, 1, 2


class CheckFailed(Exception):
    """A check the user asked for did not hold (exit code 1); the message says which."""


def parse_overrides(pairs):
    """``["depth=2", "dim=64"]`` → ``{"depth": "2", "dim": "64"}`` (values parsed by the config)."""
    overrides = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key or not value:
            raise ValueError(f"--set {pair!r}: expected KEY=VALUE with KEY one of {', '.join(OVERRIDABLE)}")
        overrides[key.strip()] = value.strip()
    return overrides


def add_model_args(parser, required=True):
    group = parser.add_argument_group("model")
    group.add_argument("--model", required=required, metavar="PRESET",
                       help=f"preset: {', '.join(PRESETS)}")
    group.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                       help=f"override a preset field ({', '.join(OVERRIDABLE)}); repeatable")
    group.add_argument("--arch", choices=ARCHITECTURES,
                       help="architecture (default: spikingformer; a checkpoint's own when not given)")


def add_output_args(parser):
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object on stdout; human text goes to stderr")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")


def config_from_args(args):
    return make_config(args.model, **parse_overrides(args.overrides))


class Reporter:
    """Human text to stdout (stderr under --json) and the final JSON object to stdout."""

    def __init__(self, as_json):
        self.as_json = as_json
        self.text_stream = sys.stderr if as_json else sys.stdout

    def say(self, text=""):
        print(text, file=self.text_stream, flush=True)

    def result(self, payload):
        if self.as_json:
            json.dump(payload, sys.stdout, sort_keys=True)
            sys.stdout.write("\n")
            sys.stdout.flush()
