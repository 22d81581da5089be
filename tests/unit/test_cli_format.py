"""The CLI's formatting (services/gateway/cli_format.py): local times, durations, the
pipeline's stages in order whatever order the JSON arrives in, tables with a header row."""

from __future__ import annotations

from datetime import timedelta, timezone

from services.gateway import cli_format as fmt
from services.gateway.cli import attachment_filename, progress_line, sse_events, status_view

KOLKATA = timezone(timedelta(hours=5, minutes=30), "IST")
# PostgreSQL's jsonb orders keys by length, then bytes: this is the order the API sends.
JSONB_ORDER = {"join": {"state": "pending"}, "notes": {"state": "pending"},
               "diarization": {"state": "done", "fraction": 1.0},
               "transcription": {"state": "running", "fraction": 0.4}}


def test_stages_come_in_pipeline_order_never_reversed():
    assert [n for n, _ in fmt.ordered_stages(JSONB_ORDER)] == ["transcription", "diarization", "join", "notes"]
    assert fmt.pipeline_line(JSONB_ORDER) == (
        "transcription running 40% ‖ diarization done → merge pending → notes pending")
    with_upload = {"notes": {"state": "pending"}, "later": {"state": "pending"}, "upload": {"state": "done"}}
    assert [n for n, _ in fmt.ordered_stages(with_upload)] == ["upload", "notes", "later"]
    assert fmt.pipeline_line(None) == ""


def test_local_time_uses_the_users_zone_or_utc():
    assert fmt.local_time("2026-11-30T21:05:09.123+00:00", tz=KOLKATA) == "2026-12-01 02:35"
    assert fmt.local_time("2026-11-30T21:05:09Z", utc=True, tz=KOLKATA) == "2026-11-30 21:05"
    assert fmt.local_time("2026-11-30T21:05:09", tz=KOLKATA) == "2026-12-01 02:35"  # naive: UTC
    assert fmt.local_time(None) == fmt.local_time("garbage") == "-"
    assert fmt.zone_name(tz=KOLKATA) == "IST" and fmt.zone_name(utc=True) == "UTC"


def test_session_day_keeps_a_date_given_without_a_time():
    west = timezone(timedelta(hours=-8), "PST")
    assert fmt.session_day("2026-11-30T00:00:00+00:00", tz=west) == "2026-11-30"
    assert fmt.session_day("2026-11-30T02:00:00+00:00", tz=west) == "2026-11-29"
    assert fmt.session_day(None) == "-"


def test_durations_and_eta_read_like_the_web_page():
    assert [fmt.clock(s) for s in (11.0, 754.9, 3723.0)] == ["00:11", "12:34", "1:02:03"]
    assert fmt.eta(None) == "" and fmt.eta(0.2) == "about 1 s left" and fmt.eta(14.6) == "about 15 s left"
    assert fmt.eta(200) == "about 3 min left"
    assert fmt.status_text("processed", 100) == "processed" and fmt.status_text("transcribing", 42) == "transcribing 42%"


def test_table_always_has_a_header_row_and_aligned_columns():
    out = fmt.table(("ID", "STATUS", "FILE"), [["a", "processed", "x.wav"], ["bbbb", "failed", "y.wav"]])
    lines = out.splitlines()
    assert lines[0] == "ID    STATUS     FILE"
    assert lines[1] == "a     processed  x.wav" and lines[2] == "bbbb  failed     y.wav"
    assert fmt.table(("ID", "STATUS"), []) == "ID  STATUS"


def test_session_rows_show_patient_names_local_times_and_durations():
    items = [{"id": "s1", "patient_id": "p1", "session_date": "2026-11-02T00:00:00Z", "created_at": "2026-11-30T21:05:00Z",
              "status": "processed", "progress": 100, "audio_filename": "a.m4a", "duration_seconds": 3723.9},
             {"id": "s2", "patient_id": None, "session_date": None, "created_at": "2026-11-30T22:00:00Z",
              "status": "transcribing", "progress": 41, "audio_filename": None, "duration_seconds": 11.0,
              "patient_name": None},
             {"id": "s3", "patient_id": "p9", "created_at": "2026-11-30T22:00:00Z", "status": "queued",
              "progress": 0, "duration_seconds": 1.0, "patient_name": "From API"}]
    rows = fmt.session_rows(items, {"p1": "Alex Doe"}, tz=KOLKATA)
    assert rows[0] == ["s1", "2026-11-02", "2026-12-01 02:35", "Alex Doe", "1:02:03", "processed", "a.m4a"]
    assert rows[1] == ["s2", "-", "2026-12-01 03:30", "-", "00:11", "transcribing 41%", "-"]
    assert rows[2][3] == "From API"


def test_flag_lines_use_the_shared_clock():
    flag = {"category": "suicidal_ideation", "severity": "high", "high_priority": True, "start": 62.7,
            "role": "CLIENT", "evidence": "I  don't want\nto be here"}
    assert fmt.flag_line(flag) == '01:02  high HIGH PRIORITY  suicidal ideation  CLIENT: "I don\'t want to be here"'


def test_status_view_lists_stages_in_order_and_flags():
    detail = {"id": "s1", "status": "processed", "progress": 100, "duration_seconds": 75.2, "stages": JSONB_ORDER,
              "created_at": "2026-11-30T21:05:00Z", "risk_flags": [{"category": "hopelessness", "severity": "moderate",
                                                                     "start": 12.9, "evidence": "hopeless"}],
              "speakers": [{"label": "SPEAKER_00", "role": "THERAPIST", "talk_time_s": 30.6}]}
    text = "\n".join(status_view(detail, "Alex", utc=True))
    assert "duration  01:15" in text and "patient   Alex" in text and "2026-11-30 21:05 (UTC)" in text
    assert "stages    transcription running 40% ‖ diarization done → merge pending → notes pending" in text
    assert "SPEAKER_00 (THERAPIST, 00:30)" in text
    assert "risk      1 flag(s): review first" in text and '00:12  moderate  hopelessness: "hopeless"' in text


def test_progress_line():
    message = {"status": "transcribing", "progress": 45, "message": "Transcribing", "estimated_time_remaining": 30,
               "stages": JSONB_ORDER}
    assert progress_line(message) == ("[ 45%] transcribing - Transcribing (about 30 s left) "
                                      "[transcription running 40% ‖ diarization done → merge pending → notes pending]")
    assert progress_line({"status": "processed", "progress": 100, "estimated_time_remaining": 3}) == "[100%] processed"


def test_attachment_filename_is_a_safe_base_name():
    assert attachment_filename('attachment; filename="session-1.soap.md"') == "session-1.soap.md"
    assert attachment_filename("attachment; filename*=UTF-8''Jos%C3%A9-2026-11-30-soap.md") == "José-2026-11-30-soap.md"
    assert attachment_filename('attachment; filename="../../etc/passwd"') == "passwd"
    assert attachment_filename('attachment; filename="..\\\\x\\\\evil.txt"') == "evil.txt"
    assert attachment_filename('attachment; filename=".."') is None
    assert attachment_filename("attachment") is None and attachment_filename(None) is None


def test_sse_events_parse_and_skip_comments_and_bad_data():
    lines = [": ping", "event: progress", "id: 7", 'data: {"status": "queued"}', "", "event: progress",
             "data: not json", "", "event: complete", "data: {", 'data: "status": "processed"}', ""]
    assert list(sse_events(iter(lines))) == [("progress", {"status": "queued"}, "7"), ("progress", None, None),
                                             ("complete", {"status": "processed"}, None)]
