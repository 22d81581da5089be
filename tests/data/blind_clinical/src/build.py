#!/usr/bin/env python3
"""Builds session_XX.json from annotated scripts src/session_XX.txt.
Format: header lines 'key: value' until '===', then one utterance per line:
  T: text || R1 || D idiom: note || A: action text || I type: description
"""
import json, glob, os, re
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.dirname(HERE)
AB = {"T": "THERAPIST", "C": "CLIENT", "C1": "CLIENT_1", "C2": "CLIENT_2", "C3": "CLIENT_3"}
CATS = {"suicidal_ideation","self_harm","harm_to_others","abuse_or_neglect","substance_crisis","psychosis_or_mania","eating_disorder_risk"}
DTYPES = {"idiom","negation","past_resolved","third_party","screening_question","hypothetical","quoted_media"}

def build(path):
    head, body = open(path).read().split("\n===\n", 1)
    s = {"speakers": [], "risk_episodes": [], "distractors": [], "action_items": [], "interventions": []}
    risks = {}
    for ln in head.strip().splitlines():
        k, v = ln.split(":", 1); v = v.strip()
        if k == "id": s["id"] = v
        elif k == "kind": s["kind"] = v
        elif k == "speaker":
            lab, name = [x.strip() for x in v.split("|")]
            s["speakers"].append({"label": lab, "name": name})
        elif k == "concerns": s["presenting_concerns"] = [x.strip() for x in v.split(";")]
        elif k == "follow_up": s["follow_up"] = v
        elif k.startswith("risk "):
            rid = k.split()[1]
            cat, sev, hp, tmp, note = [x.strip() for x in v.split("|", 4)]
            assert cat in CATS and sev in ("low","moderate","high") and tmp in ("current","past"), ln
            risks[rid] = {"lines": [], "category": cat, "severity": sev, "high_priority": hp == "true", "temporal": tmp, "note": note}
        else: raise ValueError(ln)
    lines = []
    for raw in body.strip().splitlines():
        if not raw.strip(): continue
        parts = [p.strip() for p in raw.split("||")]
        sp, text = parts[0].split(":", 1)
        lab = AB[sp.strip()]
        i = len(lines)
        lines.append({"speaker": lab, "text": text.strip()})
        for a in parts[1:]:
            if re.fullmatch(r"R\d+", a):
                assert lab != "THERAPIST", (path, i, raw)
                risks[a]["lines"].append(i)
            elif a.startswith("D "):
                t, note = a[2:].split(":", 1); t = t.strip()
                assert t in DTYPES, (path, a)
                s["distractors"].append({"line": i, "type": t, "note": note.strip()})
            elif a.startswith("A:"):
                s["action_items"].append({"line": i, "text": a[2:].strip()})
            elif a.startswith("I "):
                t, d = a[2:].split(":", 1)
                s["interventions"].append({"line": i, "type": t.strip(), "text": d.strip()})
            else: raise ValueError((path, a))
    labs = {x["label"] for x in s["speakers"]}
    assert {l["speaker"] for l in lines} <= labs, path
    for rid, r in risks.items(): assert r["lines"], (path, rid)
    words = sum(len(l["text"].split()) for l in lines)
    out = {"id": s["id"], "kind": s["kind"], "speakers": s["speakers"],
           "target_minutes": max(2, round(words / 140)), "lines": lines,
           "risk_episodes": list(risks.values()), "distractors": s["distractors"],
           "action_items": s["action_items"], "interventions": s["interventions"],
           "presenting_concerns": s["presenting_concerns"], "follow_up": s["follow_up"]}
    json.dump(out, open(os.path.join(OUT, s["id"] + ".json"), "w"), indent=1, ensure_ascii=False)
    return out, words

if __name__ == "__main__":
    for p in sorted(glob.glob(os.path.join(HERE, "session_*.txt"))):
        o, w = build(p)
        print(o["id"], o["kind"], "words", w, "min", o["target_minutes"], "risks", [(r["category"], r["severity"]) for r in o["risk_episodes"]],
              "D", len(o["distractors"]), "A", len(o["action_items"]), "I", len(o["interventions"]))
