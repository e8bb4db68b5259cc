#!/usr/bin/env python3
"""The reference point of issue #13's targets: a plain Python loop that only
matches the rules' regexes (no lifters, no database) over JSON-lines events.

    python3 benches/python_loop.py RULES_DIR EVENTS.jsonl

Loads every rule with a `match: {field, pattern}`, compiles the patterns,
then for each event: parses the line, and searches each pattern of the
rules that apply to its `source_kind` in the payload field named (string
values only). Prints events/s and the number of matches. Needs PyYAML.
"""
import json
import pathlib
import re
import sys
import time

import yaml


def main() -> None:
    rules_dir, events_path = sys.argv[1], sys.argv[2]
    by_kind = {}
    for path in sorted(pathlib.Path(rules_dir).rglob("*.y*ml")):
        rule = yaml.safe_load(path.read_text())
        match = (rule or {}).get("match") or {}
        if "pattern" not in match or "field" not in match:
            continue
        compiled = (match["field"], re.compile(match["pattern"]))
        for kind in rule.get("applies_to") or []:
            by_kind.setdefault(kind, []).append(compiled)
    lines = pathlib.Path(events_path).read_bytes().splitlines()
    started = time.perf_counter()
    matches = 0
    for line in lines:
        event = json.loads(line)
        payload = event.get("payload") or {}
        for field, pattern in by_kind.get(event.get("source_kind"), ()):
            value = payload.get(field)
            if isinstance(value, str) and pattern.search(value):
                matches += 1
    elapsed = time.perf_counter() - started
    print(
        f"{len(lines)} events in {elapsed:.2f} s = {len(lines) / elapsed:,.0f} events/s "
        f"({matches} matches, {sum(map(len, by_kind.values()))} patterns)"
    )


if __name__ == "__main__":
    main()
