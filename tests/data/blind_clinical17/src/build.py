#!/usr/bin/env python3
"""Build session_XX.json files (and README.md) from annotated src/session_XX.txt.

Source format
  header lines start with '#':
    #kind individual|couple|family
    #speaker LABEL Full Name
    #risk R1 category severity high_priority(yes|no) temporal | note
    #concern text            (repeatable)
    #follow_up text
  utterance lines:  SPEAKER: spoken text || TAG || TAG ...
    TAG = R1                      -> line belongs to risk episode R1
          D type: note            -> distractor
          A: action item text     -> action item
          I type: description     -> intervention
"""
import json, os, re, sys, collections

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.dirname(HERE)
CATS = {"suicidal_ideation", "self_harm", "harm_to_others", "abuse_or_neglect",
        "substance_crisis", "psychosis_or_mania", "eating_disorder_risk"}
DTYPES = {"idiom", "negation", "past_resolved", "third_party", "screening_question",
          "hypothetical", "quoted_media"}
KIND_LABELS = {"individual": ["THERAPIST", "CLIENT"],
               "couple": ["THERAPIST", "CLIENT_1", "CLIENT_2"],
               "family": ["THERAPIST", "CLIENT_1", "CLIENT_2", "CLIENT_3"]}


def parse(path, sid):
    kind, speakers, risks, concerns, follow = None, [], collections.OrderedDict(), [], None
    lines, distractors, actions, interventions = [], [], [], []
    for n, raw in enumerate(open(path, encoding="utf-8"), 1):
        raw = raw.rstrip("\n")
        if not raw.strip():
            continue
        where = f"{path}:{n}"
        if raw.startswith("#"):
            key, _, rest = raw[1:].partition(" ")
            rest = rest.strip()
            if key == "kind":
                kind = rest
            elif key == "speaker":
                lab, _, name = rest.partition(" ")
                speakers.append({"label": lab, "name": name.strip()})
            elif key == "risk":
                meta, _, note = rest.partition("|")
                rid, cat, sev, hp, temp = meta.split()
                assert cat in CATS, where
                assert sev in ("high", "moderate", "low"), where
                assert hp in ("yes", "no"), where
                assert temp in ("current", "past"), where
                risks[rid] = {"lines": [], "category": cat, "severity": sev,
                              "high_priority": hp == "yes", "temporal": temp,
                              "note": note.strip()}
            elif key == "concern":
                concerns.append(rest)
            elif key == "follow_up":
                follow = rest
            else:
                raise SystemExit(f"{where}: unknown header {key}")
            continue
        parts = [p.strip() for p in raw.split("||")]
        spk, sep, text = parts[0].partition(":")
        assert sep, f"{where}: no speaker"
        spk, text = spk.strip(), text.strip()
        assert text, where
        idx = len(lines)
        lines.append({"speaker": spk, "text": text})
        for tag in parts[1:]:
            if re.fullmatch(r"R\d+", tag):
                assert tag in risks, f"{where}: undeclared {tag}"
                risks[tag]["lines"].append(idx)
            elif tag.startswith("D "):
                t, _, note = tag[2:].partition(":")
                t = t.strip()
                assert t in DTYPES, f"{where}: bad distractor type {t}"
                distractors.append({"line": idx, "type": t, "note": note.strip()})
            elif tag.startswith("A:"):
                actions.append({"line": idx, "text": tag[2:].strip()})
            elif tag.startswith("I "):
                t, _, txt = tag[2:].partition(":")
                interventions.append({"line": idx, "type": t.strip(), "text": txt.strip()})
            else:
                raise SystemExit(f"{where}: bad tag {tag!r}")
    # ---- validation
    assert kind in KIND_LABELS, f"{sid}: kind"
    labels = [s["label"] for s in speakers]
    assert labels == KIND_LABELS[kind], f"{sid}: speakers {labels} for {kind}"
    assert all(s["name"] for s in speakers), sid
    used = {l["speaker"] for l in lines}
    for u in used:
        assert u in labels, f"{sid}: undeclared speaker {u}"
    for lab in labels:
        assert lab in used, f"{sid}: speaker {lab} never speaks"
    n = len(lines)
    risk_lines = set()
    for rid, r in risks.items():
        assert r["lines"], f"{sid}: {rid} has no lines"
        for i in r["lines"]:
            assert 0 <= i < n
            assert lines[i]["speaker"] != "THERAPIST", f"{sid}: {rid} on therapist line {i}"
            risk_lines.add(i)
        if r["severity"] == "high":
            assert r["high_priority"], f"{sid}: {rid} high must be high_priority"
        else:
            assert not r["high_priority"], f"{sid}: {rid}"
    for d in distractors:
        assert 0 <= d["line"] < n
        assert d["line"] not in risk_lines, f"{sid}: line {d['line']} both distractor and risk"
        if d["type"] == "screening_question":
            assert lines[d["line"]]["speaker"] == "THERAPIST", f"{sid}: screening q not therapist"
    for a in actions + interventions:
        assert 0 <= a["line"] < n
    for i in interventions:
        assert lines[i["line"]]["speaker"] == "THERAPIST", f"{sid}: intervention on non-therapist line"
    assert 1 <= len(actions) <= 4, f"{sid}: {len(actions)} actions"
    assert 2 <= len(interventions) <= 4, f"{sid}: {len(interventions)} interventions"
    assert len(distractors) >= 5, f"{sid}: {len(distractors)} distractors"
    assert len(risks) <= 2, sid
    assert concerns and follow, sid
    words = sum(len(l["text"].split()) for l in lines)
    return {"id": sid, "kind": kind, "speakers": speakers,
            "target_minutes": max(2, round(words / 140)),
            "lines": lines, "risk_episodes": list(risks.values()),
            "distractors": distractors, "action_items": actions,
            "interventions": interventions, "presenting_concerns": concerns,
            "follow_up": follow}, words


README_HEAD = """# Blind clinical evaluation set 17 (20 scripted therapy sessions)

## How it was made
HOW_IT_WAS_MADE

Each session is written as an annotated source `src/session_XX.txt` (one utterance per line,
`SPEAKER: text || TAG || TAG`; header lines `#kind`, `#speaker`, `#risk`, `#concern`, `#follow_up`).
`python3 src/build.py` (standard library only) computes every 0-based line index, validates the labels
(indices in range, risk lines never THERAPIST lines, every speaker declared and used, no line both a
risk line and a distractor, screening questions on therapist lines, 1-4 action items, 2-4 interventions,
>= 5 distractors) and writes `session_XX.json` plus this README.

Inline tags: `R1`/`R2` = line belongs to risk episode R1/R2; `D type: note` = distractor;
`A: text` = action item; `I type: text` = intervention.

## Label definitions
- **kind**: individual (THERAPIST + CLIENT), couple (THERAPIST + CLIENT_1, CLIENT_2), family (THERAPIST + CLIENT_1..CLIENT_3).
- **target_minutes** = round(words / 140), minimum 2.
- **risk episode**: one continuous disclosure of one risk category; `lines` lists only the client/family
  lines carrying the disclosure (therapist lines in between are left out). Collateral statements by family
  members count. Categories: suicidal_ideation, self_harm, harm_to_others, abuse_or_neglect,
  substance_crisis, psychosis_or_mania, eating_disorder_risk.
- **severity**: *high* (always high_priority=true): current self-harm within weeks; suicidal plan, intent or
  preparation; access to means being considered; harm to others with a named target; current abuse of a
  child; acute medical danger from an eating disorder; heavy dependence with ongoing child endangerment.
  *moderate*: current passive ideation without plan/intent; recent self-harm that has stopped with urges
  present; dangerous substance use without acute emergency; emerging psychosis/mania without harm intent;
  current domestic abuse of an adult with no recent injury. *low*: resolved past risk (attempt/ideation
  years ago, past abuse that ended, past relapse followed by months of abstinence).
- **temporal**: current = ongoing or within about a month; past = resolved months/years ago.
- **distractors**: lines a naive keyword detector might flag but which carry no current risk:
  idiom, negation, past_resolved, third_party, screening_question (the therapist's own risk question line),
  hypothetical, quoted_media. Past risk events (attempt, abuse) are low/past episodes, not distractors.
- **action_items**: agreed homework / next steps, on the line where agreed.
- **interventions**: therapist techniques on the line where used (often shown rather than named).
- **presenting_concerns**, **follow_up**: free-text summary fields.
"""


def main():
    srcs = sorted(f for f in os.listdir(HERE) if re.fullmatch(r"session_\d\d\.txt", f))
    rows, allw = [], {}
    C = collections.Counter
    kinds, lens, sev, cat, dty, hp = C(), C(), C(), C(), C(), 0
    nd = na = ni = ne = 0
    norisk = 0
    for f in srcs:
        sid = f[:-4]
        data, words = parse(os.path.join(HERE, f), sid)
        json.dump(data, open(os.path.join(OUT, sid + ".json"), "w", encoding="utf-8"),
                  indent=1, ensure_ascii=False)
        json.load(open(os.path.join(OUT, sid + ".json"), encoding="utf-8"))
        m = data["target_minutes"]
        band = "2-4" if m <= 4 else ("5-8" if m <= 8 else "9-12")
        if m > 12:
            print(f"WARNING {sid}: {m} min > 12")
        kinds[data["kind"]] += 1; lens[band] += 1
        for r in data["risk_episodes"]:
            sev[r["severity"]] += 1; cat[r["category"]] += 1; hp += r["high_priority"]
        if not data["risk_episodes"]:
            norisk += 1
        for d in data["distractors"]:
            dty[d["type"]] += 1
        nd += len(data["distractors"]); na += len(data["action_items"])
        ni += len(data["interventions"]); ne += len(data["risk_episodes"])
        risk = "; ".join(f"{r['category']} ({r['severity']}, {r['temporal']})"
                         for r in data["risk_episodes"]) or "none"
        rows.append(f"| {sid} | {data['kind']} | {m} | {words} | {len(data['lines'])} | {risk} | "
                    f"{len(data['distractors'])} | {len(data['action_items'])} | "
                    f"{len(data['interventions'])} | {'; '.join(data['presenting_concerns'])} |")
        print(f"{sid} {data['kind']:10s} {m:2d}min {words:5d}w risks={len(data['risk_episodes'])} "
              f"d={len(data['distractors'])} a={len(data['action_items'])} i={len(data['interventions'])}")
    def fmt(c):
        return ", ".join(f"{k}: {v}" for k, v in sorted(c.items()))
    counts = f"""
## Counts
- Sessions: {len(srcs)} ({fmt(kinds)})
- Length bands (minutes): {fmt(lens)}
- Sessions with no risk episode: {norisk}
- Risk episodes: {ne}; high_priority: {hp}
- By severity: {fmt(sev)}
- By category: {fmt(cat)}
- Distractors: {nd} ({fmt(dty)})
- Action items: {na}; interventions: {ni}

## Sessions
| id | kind | min | words | lines | risk episodes | distractors | actions | interventions | presenting concerns |
|---|---|---|---|---|---|---|---|---|---|
""" + "\n".join(rows) + "\n"
    open(os.path.join(OUT, "README.md"), "w", encoding="utf-8").write(README_HEAD.replace("HOW_IT_WAS_MADE\n", open(os.path.join(HERE, "HOW_MADE.md"), encoding="utf-8").read() if os.path.exists(os.path.join(HERE, "HOW_MADE.md")) else "(not written yet)\n") + counts)
    print(counts)


if __name__ == "__main__":
    main()
