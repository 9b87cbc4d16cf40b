#!/usr/bin/env python3
"""Independent reference checker for the SARIF gate (stdlib only).

Usage:
    python3 reference_gate.py [--write expected.json] [FILE.sarif ...]

With no FILE arguments every *.sarif file next to this script is checked.
Prints a per-file summary; with --write, writes
    {"<file name>": {"pass": bool,
                     "counted": [{"rule": str|null, "location": "uri:line"|"uri"|null,
                                  "level": str, "severity": float|null}, ...]}}

Rules implemented (see README.md):
  * decode UTF-8, strip one leading BOM;
  * rule lookup, per run:
      1. result.rule.index -> rules of tool.extensions[result.rule.toolComponent.index]
         when that is present, else tool.driver.rules;
      2. else result.ruleIndex -> same choice of component;
      3. else result.ruleId / result.rule.id matched against rule "id" in the driver,
         then in each extension in order; a hierarchical id A/B/C with no exact
         match is retried as A/B, then A.
    An index that is out of range falls through to the next step.
  * effective level: result.level if present; else "none" if result.kind is
    present and not "fail"; else the first invocation ruleConfigurationOverrides
    entry (invocations in order, entries in order) whose descriptor points to the
    rule (descriptor.index = the rule's index in the component chosen by
    descriptor.toolComponent.index / driver when absent; else descriptor.id = rule
    id) and has configuration.level; else rule.defaultConfiguration.level; else
    "warning".
  * suppressed: suppressions non-empty and no entry with status "rejected" or
    "underReview".
  * security-severity: rule.properties["security-severity"], else
    result.properties["security-severity"]; a string or number converted to
    float; a value that does not convert is treated as absent.
  * a result whose kind is present and not "fail" is never counted;
    otherwise a non-suppressed result is counted when severity >= 7.0, or when
    severity is absent and the effective level is "error".
  * pass = no counted result.
  * location: locations[0].physicalLocation.artifactLocation.uri and
    region.startLine -> "uri:line"; "uri" when there is no startLine; null when
    there is no uri.
  * reported "rule": result.ruleId, else result.rule.id, else the id of the
    rule found, else null.
"""

import json
import os
import sys

BOM = "\ufeff"


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _dict(v):
    return v if isinstance(v, dict) else {}


def _list(v):
    return v if isinstance(v, list) else []


def components(run):
    """Return (driver_rules, [extension_rules, ...])."""
    tool = _dict(run.get("tool"))
    driver_rules = _list(_dict(tool.get("driver")).get("rules"))
    ext_rules = [_list(_dict(e).get("rules")) for e in _list(tool.get("extensions"))]
    return driver_rules, ext_rules


def component_rules(run, tc_index):
    """tc_index None -> driver; int -> extensions[tc_index] (None if absent)."""
    driver_rules, ext_rules = components(run)
    if tc_index is None:
        return ("driver", None), driver_rules
    if _is_int(tc_index) and 0 <= tc_index < len(ext_rules):
        return ("ext", tc_index), ext_rules[tc_index]
    return None, None


def find_rule(run, result):
    """Return (component_key, index, rule_dict) or (None, None, None)."""
    rref = _dict(result.get("rule"))
    tc = _dict(rref.get("toolComponent"))
    tc_index = tc.get("index") if "index" in tc else None

    for idx in (rref.get("index"), result.get("ruleIndex")):
        if _is_int(idx):
            key, rules = component_rules(run, tc_index)
            if rules is not None and 0 <= idx < len(rules) and isinstance(rules[idx], dict):
                return key, idx, rules[idx]

    rid = result.get("ruleId")
    if not isinstance(rid, str):
        rid = rref.get("id")
    if not isinstance(rid, str):
        return None, None, None

    driver_rules, ext_rules = components(run)
    searched = [(("driver", None), driver_rules)] + [
        (("ext", i), rules) for i, rules in enumerate(ext_rules)
    ]
    candidate = rid
    while True:
        for key, rules in searched:
            for i, rule in enumerate(rules):
                if isinstance(rule, dict) and rule.get("id") == candidate:
                    return key, i, rule
        if "/" not in candidate:
            return None, None, None
        candidate = candidate.rsplit("/", 1)[0]


def override_level(run, key, index, rule):
    for inv in _list(run.get("invocations")):
        for ov in _list(_dict(inv).get("ruleConfigurationOverrides")):
            ov = _dict(ov)
            desc = _dict(ov.get("descriptor"))
            level = _dict(ov.get("configuration")).get("level")
            if not isinstance(level, str):
                continue
            dtc = _dict(desc.get("toolComponent"))
            dkey = ("ext", dtc["index"]) if "index" in dtc else ("driver", None)
            if _is_int(desc.get("index")):
                if dkey == key and desc["index"] == index:
                    return level
            elif isinstance(desc.get("id"), str):
                if desc["id"] == rule.get("id") and ("index" not in dtc or dkey == key):
                    return level
    return None


def effective_level(run, result, key, index, rule):
    level = result.get("level")
    if isinstance(level, str):
        return level
    kind = result.get("kind")
    if isinstance(kind, str) and kind != "fail":
        return "none"
    if rule is not None:
        lv = override_level(run, key, index, rule)
        if lv is not None:
            return lv
        lv = _dict(rule.get("defaultConfiguration")).get("level")
        if isinstance(lv, str):
            return lv
    return "warning"


def to_float(v):
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v.strip())
        except ValueError:
            return None
    return None


def severity(rule, result):
    if rule is not None:
        s = to_float(_dict(rule.get("properties")).get("security-severity"))
        if s is not None:
            return s
    return to_float(_dict(result.get("properties")).get("security-severity"))


def is_suppressed(result):
    sups = _list(result.get("suppressions"))
    if not sups:
        return False
    return not any(_dict(s).get("status") in ("rejected", "underReview") for s in sups)


def location(result):
    locs = _list(result.get("locations"))
    if not locs:
        return None
    phys = _dict(_dict(locs[0]).get("physicalLocation"))
    uri = _dict(phys.get("artifactLocation")).get("uri")
    if not isinstance(uri, str):
        return None
    line = _dict(phys.get("region")).get("startLine")
    return f"{uri}:{line}" if _is_int(line) else uri


def check_bytes(data):
    text = data.decode("utf-8")
    if text.startswith(BOM):
        text = text[1:]
    log = json.loads(text)
    total = 0
    counted = []
    for run in _list(_dict(log).get("runs")):
        run = _dict(run)
        for result in _list(run.get("results")):
            result = _dict(result)
            total += 1
            kind = result.get("kind")
            if isinstance(kind, str) and kind != "fail":
                continue
            if is_suppressed(result):
                continue
            key, index, rule = find_rule(run, result)
            level = effective_level(run, result, key, index, rule)
            sev = severity(rule, result)
            if (sev is not None and sev >= 7.0) or (sev is None and level == "error"):
                rid = result.get("ruleId")
                if not isinstance(rid, str):
                    rid = _dict(result.get("rule")).get("id")
                if not isinstance(rid, str):
                    rid = rule.get("id") if rule is not None else None
                counted.append(
                    {"rule": rid, "location": location(result), "level": level, "severity": sev}
                )
    return total, {"pass": not counted, "counted": counted}


def main(argv):
    here = os.path.dirname(os.path.abspath(__file__))
    out = None
    files = []
    i = 0
    while i < len(argv):
        if argv[i] == "--write":
            out = argv[i + 1]
            i += 2
        else:
            files.append(argv[i])
            i += 1
    if not files:
        files = sorted(
            os.path.join(here, f) for f in os.listdir(here) if f.endswith(".sarif")
        )
    expected = {}
    print(f"{'file':45} {'results':>7} {'counted':>7}  pass")
    for path in files:
        with open(path, "rb") as fh:
            total, verdict = check_bytes(fh.read())
        name = os.path.basename(path)
        expected[name] = verdict
        print(f"{name:45} {total:7d} {len(verdict['counted']):7d}  {verdict['pass']}")
    if out:
        with open(out, "w", encoding="utf-8") as fh:
            json.dump(expected, fh, indent=2, sort_keys=True)
            fh.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
