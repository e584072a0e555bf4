#!/usr/bin/env python3
"""Extract the subset of Microsoft Graph's v1.0 CSDL that the simulator validates against.

Usage: python3 extract.py ../../../../shared/graph/v1.0-Prod.csdl > graph-v1.0-subset.json

The simulator embeds the JSON output (include_str!), so builds and tests never read a path
outside the repository. Re-run this script when the list below changes.
"""
import json
import sys
import xml.etree.ElementTree as ET

EDM = "{http://docs.oasis-open.org/odata/ns/edm}"
# Entity types whose request bodies the simulator checks (POST/PATCH/PUT), with their bases.
ENTITIES = ["domain", "user", "group", "team", "channel", "onlineMeeting", "domainDnsRecord"]
# Bound actions the simulator implements: (binding type, action name).
ACTIONS = [("user", "assignLicense"), ("user", "revokeSignInSessions"), ("domain", "verify"),
           ("domain", "forceDelete"), ("onlineMeeting", "createOrGet")]


def main(path):
    root = ET.parse(path).getroot()
    schema = next(root.iter(EDM + "Schema"))
    types = {}
    for el in schema:
        tag = el.tag.replace(EDM, "")
        if tag in ("EntityType", "ComplexType"):
            types[el.get("Name")] = el
    out = {"source": "Microsoft Graph v1.0 CSDL (v1.0-Prod.csdl), subset", "types": {}, "actions": {}}

    def short(t):
        inner = t[len("Collection("):-1] if t.startswith("Collection(") else t
        return inner.replace("graph.", "")

    pending = list(ENTITIES)
    while pending:
        name = pending.pop()
        if name in out["types"] or name not in types:
            continue
        el = types[name]
        entry = {"kind": el.tag.replace(EDM, ""), "base": short(el.get("BaseType") or "") or None,
                 "properties": {}, "navigation": {}}
        for p in el.findall(EDM + "Property"):
            entry["properties"][p.get("Name")] = p.get("Type")
            target = short(p.get("Type"))
            if target in types and types[target].tag == EDM + "ComplexType":
                pending.append(target)
        for p in el.findall(EDM + "NavigationProperty"):
            entry["navigation"][p.get("Name")] = p.get("Type")
        out["types"][name] = entry
        if entry["base"]:
            pending.append(entry["base"])
    for el in schema.findall(EDM + "Action"):
        params = el.findall(EDM + "Parameter")
        if not params:
            continue
        binding = short(params[0].get("Type"))
        key = (binding, el.get("Name"))
        if key in ACTIONS:
            out["actions"][f"{binding}.{el.get('Name')}"] = {
                p.get("Name"): p.get("Type") for p in params[1:]}
            for p in params[1:]:
                target = short(p.get("Type"))
                if target in types and types[target].tag == EDM + "ComplexType":
                    pending.append(target)
    # complex types referenced by action parameters
    while pending:
        name = pending.pop()
        if name in out["types"] or name not in types:
            continue
        el = types[name]
        entry = {"kind": "ComplexType", "base": short(el.get("BaseType") or "") or None,
                 "properties": {p.get("Name"): p.get("Type") for p in el.findall(EDM + "Property")},
                 "navigation": {}}
        out["types"][name] = entry
        for t in entry["properties"].values():
            target = short(t)
            if target in types and types[target].tag == EDM + "ComplexType":
                pending.append(target)
    missing = [k for k in ACTIONS if f"{k[0]}.{k[1]}" not in out["actions"]]
    if missing:
        sys.exit(f"actions not found: {missing}")
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    print()


if __name__ == "__main__":
    main(sys.argv[1])
