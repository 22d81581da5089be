"""End to end through every service process: a synthesised therapy dialogue uploaded over
HTTP comes back with a transcript and offline clinical notes (no LLM endpoint configured),
and the notes export in a clinician format."""

from __future__ import annotations

import time

from tests.audio_gen import generate_dialogue

DIALOGUE = [
    ("therapist", "How have things been since we last met?"),
    ("client", "Honestly, it has been a hard week. I have not been sleeping well."),
    ("therapist", "I am sorry to hear that. What has been keeping you awake?"),
    ("client", "Mostly work. My manager keeps adding more to my plate and I worry about it at night."),
    ("therapist", "That sounds really exhausting. Have you tried the breathing exercise we discussed?"),
    ("client", "I tried it twice. It helped a little, but I forgot on the other nights."),
    ("therapist", "For this week, could you try it every evening before bed and keep a short diary?"),
    ("client", "I can do that. I will put a reminder on my phone."),
]


def test_upload_to_offline_notes(pipeline, tmp_path):
    api, _, _ = pipeline
    audio = generate_dialogue(DIALOGUE)
    t0 = time.monotonic()
    response = api.upload(audio.wav)
    assert response.status_code == 202, response.text
    sid = response.json()["id"]
    detail = api.wait(sid, lambda d: d["extracted_notes"] or d["notes_error"] or d["status"] == "failed",
                      timeout_s=300)
    elapsed = time.monotonic() - t0
    assert detail["status"] != "failed", detail["error"]
    assert detail["notes_error"] is None, detail["notes_error"]
    notes = detail["extracted_notes"]
    assert notes, "no notes"
    assert detail["notes_engine"]["backend"] == "offline"
    assert "offline" in notes["therapist_notes"].lower()
    text = (detail["transcript_text"] or "").lower()
    # every quote the offline backend picked is verbatim transcript text
    for quote in notes["significant_quotes"]:
        assert quote["quote"].lower() in text
    export = api.client.get(f"/api/sessions/{sid}/export/soap", headers=api.headers)
    assert export.status_code == 200 and export.text.strip()
    print(f"\n[notes-e2e] upload -> notes {elapsed:.1f}s; topics {notes['key_topics']}; "
          f"{len(notes['action_items'])} action item(s); status {detail['status']}")
