#!/usr/bin/env python3
"""Issue #14's speed fixture for `ttp bench`: 50 correlation rules (10 for
each of 5 source kinds, every type of correlation) plus the 15 single-event
rules the temporal ones count, and N events (default 1,000,000) of 10,000
attackers, 2 ms apart, each selected by about half of its kind's rules.

    python3 benches/correlation_fixture.py OUT_DIR [N]
    ttp bench --rules OUT_DIR/rules --events OUT_DIR/events.jsonl --no-db --repeat 1

Deterministic (a fixed seed).
"""
import json
import pathlib
import random
import sys

KINDS = ["auth_attempt", "command", "http_request", "session", "credential"]
TYPES = ["event_count", "value_count", "value_sum", "temporal", "temporal_ordered"]


def rules(out: pathlib.Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for k, kind in enumerate(KINDS):
        steps = []
        for s in "abc":
            rid = f"S-{k}-{s}"
            steps.append(rid)
            (out / f"{rid}.yaml").write_text(
                f"rule_id: {rid}\nrule_version: 1\nname: step {s} on {kind}\n"
                f"applies_to: [{kind}]\nmatch: {{all: [{{field: step, equals: {s}}}]}}\n"
                "emits: [{tactic: TA0007, technique_id: T1082, confidence: 0.5}]\n"
            )
        for i in range(10):
            rid = f"C-{k}-{i}"
            kind_of = TYPES[i % 5]
            body = {
                "event_count": "  match: {all: [{field: s%d, equals: 1}]}\n  condition: {gte: 10}\n",
                "value_count": "  match: {all: [{field: s%d, equals: 1}]}\n  field: user\n  condition: {gte: 5}\n",
                "value_sum": "  match: {all: [{field: s%d, equals: 1}]}\n  field: n\n  condition: {gt: 1000}\n",
                "temporal": "  rules: [%s]\n" % ", ".join(steps),
                "temporal_ordered": "  rules: [%s]\n" % ", ".join(steps),
            }[kind_of]
            if "%d" in body:
                body = body % i
            (out / f"{rid}.yaml").write_text(
                f"rule_id: {rid}\nrule_version: 1\nname: {kind_of} {i} on {kind}\n"
                f"applies_to: [{kind}]\ncorrelate:\n  type: {kind_of}\n{body}"
                "  group_by: [attacker_uuid]\n  window: 5m\n  lateness: 5s\n"
                "emits: [{tactic: TA0006, technique_id: T1110, confidence: 0.6}]\n"
            )


def events(path: pathlib.Path, n: int) -> None:
    rng = random.Random(14)
    base = 1_795_161_600_000
    with path.open("w") as f:
        for i in range(n):
            payload = {f"s{b}": rng.getrandbits(1) for b in range(10)}
            payload.update(
                user=f"user{rng.randrange(64)}",
                n=rng.randrange(100),
                step=rng.choice("abc"),
                ts=(base + 2 * i + rng.randrange(3)) / 1000,
            )
            f.write(json.dumps({
                "source_kind": KINDS[rng.randrange(5)],
                "source_id": f"e{i}",
                "attacker_uuid": f"attacker-{rng.randrange(10_000):05}",
                "payload": payload,
            }) + "\n")


def main() -> None:
    out = pathlib.Path(sys.argv[1])
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000
    rules(out / "rules")
    events(out / "events.jsonl", n)


if __name__ == "__main__":
    main()
