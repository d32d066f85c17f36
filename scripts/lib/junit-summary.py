#!/usr/bin/env python3
"""Summarise ginkgo JUnit reports of a conformance run (scripts/conformance.sh).

Prints every failed test with the first line of its failure, the wall time, and last
`conformance: N passed, N failed, N skipped`. A test is counted once over all reports: a spec
ginkgo filtered out of one part (the [Serial] part lists the parallel part's specs as skipped)
counts with its result in the other. Only specs matching --focus (and not --skip) count.
Exit status 1 when a test failed or a report is missing.
"""

import argparse
import re
import sys
import xml.etree.ElementTree as ET

RANK = {"skipped": 0, "pending": 0, "passed": 1, "failed": 2}


def status_of(case):
    status = case.get("status")
    if status in ("failed", "panicked", "interrupted", "aborted", "timedout"):
        return "failed"
    if status:
        return status if status in RANK else "failed"
    if case.find("failure") is not None or case.find("error") is not None:
        return "failed"
    if case.find("skipped") is not None:
        return "skipped"
    return "passed"


def first_line(case):
    for tag in ("failure", "error"):
        el = case.find(tag)
        if el is not None:
            text = (el.get("message") or "") + "\n" + (el.text or "")
            for line in text.splitlines():
                if line.strip():
                    return line.strip()
    return "(no failure message)"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--wall", type=int, default=None, help="wall time in seconds")
    ap.add_argument("--focus", default=r"\[Conformance\]")
    ap.add_argument("--skip", default="")
    ap.add_argument("reports", nargs="+")
    args = ap.parse_args()
    focus = re.compile(args.focus)
    skip = re.compile(args.skip) if args.skip else None

    results = {}
    missing = []
    for path in args.reports:
        try:
            root = ET.parse(path).getroot()
        except (OSError, ET.ParseError) as e:
            missing.append(f"{path}: {e}")
            continue
        for case in root.iter("testcase"):
            name = case.get("name", "")
            if name.startswith("[It] "):
                name = name[len("[It] "):]
            if name.startswith("["):
                if not re.match(r"\[sig-|\[k8s\.io\]", name):
                    continue  # [SynchronizedBeforeSuite], [ReportAfterSuite], ...
            if not focus.search(name) or (skip and skip.search(name)):
                continue
            st = status_of(case)
            prev = results.get(name)
            if prev is None or RANK[st] > RANK[prev[0]]:
                results[name] = (st, first_line(case) if st == "failed" else "")

    failed = sorted(n for n, (s, _) in results.items() if s == "failed")
    passed = sum(1 for s, _ in results.values() if s == "passed")
    skipped = sum(1 for s, _ in results.values() if s in ("skipped", "pending"))
    for name in failed:
        print(f"FAILED: {name}\n    {results[name][1]}")
    for m in missing:
        print(f"MISSING REPORT: {m}")
    if args.wall is not None:
        w = args.wall
        print(f"wall time: {w // 3600}h{w % 3600 // 60:02d}m{w % 60:02d}s ({w} s)")
    print(f"conformance: {passed} passed, {len(failed)} failed, {skipped} skipped")
    return 1 if failed or missing else 0


if __name__ == "__main__":
    sys.exit(main())
