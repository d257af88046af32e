"""Fuzz the bundle loader, the format's rules and the firmware compiler with mutated digits bundles.

Exports a digits-tiny bundle (random network of ``--seed``, no QONNX file) into a temporary folder,
or takes ``--bundle DIR``, then evaluates ``--mutations`` random mutations of it
(``spikeforge.tests.ops.bundle_mutations``: byte flips, truncations and deletions of every file,
field edits of every JSON type in every section of the manifest, layer programs reordered,
dropped or duplicated, table rewrites, consistent multi-field edits). Each is applied

* as is (digest not recomputed): ``load_bundle`` must refuse it with a one-line ``BundleError``;
* replayed (digest and checksums recomputed): rejected by ``load_bundle``, rejected by the
  compiler (``CompileError``) or accepted — then it must compile losslessly (every weight, bias
  and threshold row unpacks to the bundle's values, the built widths hold the declared ones) and
  the golden model must run on ``digits:2`` without an exception or overflow.

Prints the outcomes as a table and as one line of JSON; exits 1 on any traceback, acceptance
without digest, badly worded refusal, lossy compile or overflow.

    .venv/bin/python bench/bundle_fuzz.py [--mutations 10000] [--seed 0] [--bundle DIR]
"""

import argparse
import json
import random
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from spikeforge.tests.ops.bundle_mutations import (AS_IS_OUTCOMES, REPLAY_OUTCOMES, BaseBundle, Evaluator,
                                                    draw_mutation)


def export(seed, out):
    """``spikeforge export --model digits-tiny --seed SEED --no-qonnx --out OUT``."""
    command = [sys.executable, "-m", "spikeforge.cli.main", "export", "--model", "digits-tiny", "--seed", str(seed),
               "--no-qonnx", "--out", str(out)]
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"bundle_fuzz: export failed:\n{proc.stderr}")
    return out


def table(rows, header):
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    line = lambda row: "  ".join(str(v).rjust(w) if i else str(v).ljust(w) for i, (v, w) in enumerate(zip(row, widths)))
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mutations", type=int, default=10_000, help="mutations to evaluate (default 10000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the exported network and of the mutations")
    parser.add_argument("--bundle", type=Path, help="fuzz this bundle instead of exporting one")
    parser.add_argument("--show", type=int, default=10, help="kinds of failure to print with an example (default 10)")
    parser.add_argument("--exact-helpers", action="store_true",
                        help="run load_bundle without the (exact) speed-ups of bundle_mutations.accelerated (slow)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bundle-fuzz-") as tmp:
        tmp = Path(tmp)
        if args.bundle is None:
            print(f"exporting digits-tiny (seed {args.seed}) ...", file=sys.stderr)
            source = export(args.seed, tmp / "bundle")
        else:
            source = args.bundle
        base = BaseBundle.read(source)
        evaluator = Evaluator(base, tmp / "scratch", accelerate=not args.exact_helpers)
        rng = random.Random(args.seed)
        results = []
        fuzz_start = time.perf_counter()
        for _ in tqdm(range(args.mutations), desc="mutations", unit="mut", mininterval=2, file=sys.stderr):
            results.append(evaluator.evaluate(draw_mutation(base, rng)))
        fuzz_seconds = time.perf_counter() - fuzz_start

    as_is = Counter(r.as_is for r in results)
    replay = Counter(r.replay for r in results)
    categories = sorted({r.mutation.category for r in results})
    by_category = Counter((r.mutation.category, r.replay) for r in results)
    failures = [r for r in results if r.failed]
    print(table([[outcome, as_is[outcome]] for outcome in AS_IS_OUTCOMES], ["as is (digest kept)", "count"]))
    print()
    print(table([[outcome, replay[outcome]] for outcome in REPLAY_OUTCOMES], ["replayed (digest recomputed)", "count"]))
    print()
    shown = [o for o in REPLAY_OUTCOMES if replay[o]]
    print(table([[c, sum(by_category[c, o] for o in REPLAY_OUTCOMES), *(by_category[c, o] for o in shown)]
                 for c in categories], ["category", "total", *shown]))
    kinds = {}
    for result in failures:
        kinds.setdefault(re.sub(r"-?\d+", "N", result.detail), []).append(result)
    for signature, group in sorted(kinds.items(), key=lambda item: -len(item[1]))[:args.show]:
        result = group[0]
        print(f"\nFAILURE x{len(group)} [{result.mutation.category}] {result.mutation.description}\n"
              f"  as is: {result.as_is}; replayed: {result.replay}\n  {result.detail}")
    summary = {"mutations": len(results), "seed": args.seed, "bundle": str(args.bundle or "exported"),
               "as_is": {o: as_is[o] for o in AS_IS_OUTCOMES}, "replayed": {o: replay[o] for o in REPLAY_OUTCOMES},
               "failures": len(failures), "tracebacks": sum(r.as_is == "traceback" or r.replay == "traceback"
                                                            for r in results),
               "seconds": round(time.perf_counter() - start, 1), "fuzz_seconds": round(fuzz_seconds, 1)}
    print()
    print(json.dumps(summary, sort_keys=True))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
