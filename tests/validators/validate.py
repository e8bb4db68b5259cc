"""Checks an export with the reference tools: ATT&CK's own layer classes
(mitreattack-python), the OASIS STIX 2.1 validator and PyMISP.

usage: validate.py navigator|stix|misp FILE

Prints what the tool reported and exits 1 on any error (for STIX: any
validator error; warnings are printed, not fatal)."""
import json
import sys


def navigator(path):
    from mitreattack.navlayers import Layer

    with open(path, encoding="utf-8") as f:
        given = json.load(f)
    layer = Layer()
    layer.from_file(path)
    out = layer.to_dict() if layer.layer is not None else None
    if out is None:
        raise SystemExit("mitreattack-python did not load the layer")
    if len(out.get("techniques", [])) != len(given.get("techniques", [])):
        raise SystemExit("mitreattack-python dropped techniques from the layer")
    print(f"layer {out.get('name')!r}: {len(out.get('techniques', []))} techniques, "
          f"versions {out.get('versions')}")


def stix(path):
    from stix2validator import ValidationOptions, validate_file

    results = validate_file(path, ValidationOptions(version="2.1"))
    for obj in results.object_results:
        for w in obj.warnings:
            print(f"warning: {obj.object_id}: {w}")
        for e in obj.errors:
            print(f"error: {obj.object_id}: {e}")
    if results.fatal:
        raise SystemExit(f"fatal: {results.fatal.message}")
    if not results.is_valid:
        raise SystemExit("stix2-validator: the bundle is not valid")
    print(f"bundle valid: {len(results.object_results)} objects")


def misp(path):
    from pymisp import MISPEvent

    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    events = data["response"] if "response" in data else [data]
    for raw in events:
        event = MISPEvent(strict_validation=True)
        event.load(json.dumps(raw))
        back = event.to_dict()
        galaxies = [c["value"] for g in back.get("Galaxy", []) for c in g.get("GalaxyCluster", [])]
        print(f"event {event.uuid}: {len(event.attributes)} attributes, "
              f"{len(event.objects)} objects, {len(galaxies)} galaxy clusters, "
              f"{len(event.tags)} tags")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("navigator", "stix", "misp"):
        raise SystemExit(__doc__)
    {"navigator": navigator, "stix": stix, "misp": misp}[sys.argv[1]](sys.argv[2])
