"""Where a profiled run's step processes spent their time (bench/workflow/profile_steps.sh).

    python bench/workflow/profile_report.py STACKS_DIR [--rule RULE] [--min-seconds 3] [--rate-hz 50]

STACKS_DIR holds one py-spy collapsed-stack file per step process, named `<step>.<pid>.txt`.
Prints seconds of samples (at --rate-hz, py-spy's rate; the process on a CPU) by step, the import
time by step and by the imported package that was being loaded, and each function's inclusive time
per step.
"""

from __future__ import annotations

import argparse
import collections
import re
from pathlib import Path

FRAME = re.compile(r"(.*) \((.*?)(:\d+)?\)$")


def frames(stack: str) -> list[tuple[str, str]]:
    out = []
    for frame in stack.split(";"):
        match = FRAME.match(frame)
        out.append((match.group(1), match.group(2)) if match else (frame, ""))
    return out


def imported_package(stack: list[tuple[str, str]]) -> str | None:
    """The outermost non-project module being imported in a stack, or None outside imports."""
    if not any(name == "_find_and_load" for name, _ in stack):
        return None
    for name, path in stack[1:]:
        if name == "<module>" and not path.startswith(("workflow_scripts", "<frozen")):
            return path.split("/")[0]
    return "(the project's own modules)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stacks", type=Path)
    parser.add_argument("--rule", help="functions of this step only")
    parser.add_argument("--min-seconds", type=float, default=3.0, help="functions below this are left out")
    parser.add_argument("--rate-hz", type=float, default=50.0, help="py-spy's sampling rate (profile_steps.sh: 50)")
    args = parser.parse_args()

    by_step, jobs = collections.Counter(), collections.Counter()
    imports, packages = collections.Counter(), collections.Counter()
    inclusive = collections.Counter()
    for path in sorted(args.stacks.glob("*.txt")):
        step = path.name.split(".")[0]
        jobs[step] += 1
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            stack_text, count = line.rsplit(" ", 1)
            count, stack = int(count), frames(stack_text)
            by_step[step] += count
            package = imported_package(stack)
            if package is not None:
                imports[step] += count
                packages[package] += count
            for key in set(stack):
                inclusive[(step, key)] += count

    total = sum(by_step.values())
    print(f"samples: {total / args.rate_hz:.1f} s in {sum(jobs.values())} step processes")
    print("\n| step | processes | sampled (s) | of which imports (s) | imports per process (s) |")
    print("|---|---|---|---|---|")
    for step, count in by_step.most_common():
        print(f"| {step} | {jobs[step]} | {count / args.rate_hz:.1f} | {imports[step] / args.rate_hz:.1f} "
              f"| {imports[step] / args.rate_hz / jobs[step]:.2f} |")
    print(f"\nimports by package being loaded ({sum(imports.values()) / args.rate_hz:.1f} s):")
    for package, count in packages.most_common(12):
        print(f"  {count / args.rate_hz:7.1f} s  {package}")
    print(f"\ninclusive time per step and function (>= {args.min_seconds} s):")
    for (step, (name, path)), count in inclusive.most_common():
        seconds = count / args.rate_hz
        if seconds < args.min_seconds:
            break
        if (args.rule and step != args.rule) or name in ("", "_run_module_as_main", "_run_code") \
                or path.startswith("<frozen"):
            continue
        print(f"  {seconds:7.1f} s  {step:18s} {name[:48]:48s} {path[-60:]}")


if __name__ == "__main__":
    main()
