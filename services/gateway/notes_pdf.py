"""The session as a PDF (reportlab, pure Python): title and review status (signed or draft,
version), then the notes with the risk flags on top (active ones first, high priority
marked, dismissed ones listed apart with who, when and why), then the notes sections,
the signature and addenda, and last the speaker-labelled transcript.

Blocking (builds the whole document in memory): the export route runs it in a worker
thread. The PDF's standard fonts cover Windows-1252 (Western European text); other
characters are transliterated where Unicode allows it and shown as "?" otherwise
(docs/adr/0008-notes-review-and-sign-off.md)."""

from __future__ import annotations

import io
import unicodedata
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer

from shared.contracts.notes import ClinicalNotes
from services.gateway.exports import to_txt
from services.gateway.notes_render import SessionMeta, review_status_line
from services.gateway.notes_text import addenda_lines, header_lines, risk_lines, sections

_STYLES = getSampleStyleSheet()
BODY = ParagraphStyle("tb-body", parent=_STYLES["BodyText"], fontSize=10, leading=13)
BULLET = ParagraphStyle("tb-bullet", parent=BODY, leftIndent=12, bulletIndent=2)
SMALL = ParagraphStyle("tb-small", parent=BODY, fontSize=9, leading=11.5, textColor=colors.HexColor("#333333"))
RISK = ParagraphStyle("tb-risk", parent=BULLET, textColor=colors.HexColor("#8b0000"))
H1, H2 = _STYLES["Title"], _STYLES["Heading2"]
H3 = ParagraphStyle("tb-h3", parent=_STYLES["Heading3"], spaceBefore=8, spaceAfter=2)


def pdf_text(text: object) -> str:
    """Text the standard fonts can draw (Windows-1252), escaped for reportlab's markup."""
    out = []
    for char in str(text or ""):
        try:
            char.encode("cp1252")
            out.append(char)
        except UnicodeEncodeError:
            plain = unicodedata.normalize("NFKD", char).encode("ascii", "ignore").decode()
            out.append(plain or "?")
    return escape("".join(out)).replace("\n", "<br/>")


def _para(text: str, style: ParagraphStyle = BODY, bold_prefix: str = "") -> Paragraph:
    prefix = f"<b>{pdf_text(bold_prefix)}</b>" if bold_prefix else ""
    return Paragraph(prefix + pdf_text(text), style)


def _risk_story(notes: ClinicalNotes, meta: SessionMeta) -> list:
    heading, active, dismissed = risk_lines(notes, meta)
    story = [Paragraph(pdf_text(heading.split(":")[0].upper()), H2), _para(heading.split(":", 1)[1].strip(), SMALL)]
    for line in active:
        high = line.startswith("HIGH PRIORITY - ")
        story.append(_para(line.removeprefix("HIGH PRIORITY - "), RISK if high else BULLET,
                           "HIGH PRIORITY: " if high else ""))
    if dismissed:
        story.append(Paragraph(pdf_text("Dismissed by the clinician (kept for the record)"), H3))
        story += [_para(line, BULLET) for line in dismissed]
    return story


def _notes_story(notes: ClinicalNotes) -> list:
    story = [Paragraph("Clinical notes", H2)]
    for title, items, is_list in sections(notes):
        story.append(Paragraph(pdf_text(title), H3))
        if not items:
            story.append(_para("None recorded.", SMALL))
        for item in items:
            story.append(Paragraph(pdf_text(item), BULLET, bulletText="-") if is_list else _para(item))
    return story


def _review_story(meta: SessionMeta) -> list:
    story = [Paragraph("Review and signature", H2), _para(review_status_line(meta.review), BODY, "Status: ")]
    addenda = addenda_lines(meta)
    if addenda:
        story.append(Paragraph("Addenda (after signing)", H3))
        story += [Paragraph(pdf_text(line), BULLET, bulletText="-") for line in addenda]
    return story


def _footer(canvas, doc) -> None:
    canvas.saveState()
    canvas.setFont("Helvetica", 8)
    canvas.setFillColor(colors.grey)
    canvas.drawString(18 * mm, 10 * mm, "Confidential clinical record")
    canvas.drawRightString(A4[0] - 18 * mm, 10 * mm, f"Page {doc.page}")
    canvas.restoreState()


def to_pdf(notes: ClinicalNotes | None, meta: SessionMeta, segments: list[dict], speakers: list[dict]) -> bytes:
    """The PDF's bytes: notes (risk flags first), review status and addenda, transcript."""
    story: list = [Paragraph(pdf_text(meta.title), H1)]
    story += [_para(line.split(": ", 1)[1], SMALL, line.split(": ", 1)[0] + ": ") for line in header_lines(meta)]
    story.append(Spacer(1, 4 * mm))
    if notes is not None:
        story += _risk_story(notes, meta) + _notes_story(notes)
    else:
        story.append(_para("No notes for this session yet."))
    story += _review_story(meta)
    story.append(Paragraph("Transcript", H2))
    lines = to_txt(segments or [], speakers).splitlines()
    story += [_para(line, SMALL) for line in lines] or [_para("No transcript for this session yet.", SMALL)]
    out = io.BytesIO()
    document = SimpleDocTemplate(out, pagesize=A4, title=meta.title, author="TherapyBridge", leftMargin=18 * mm,
                                 rightMargin=18 * mm, topMargin=16 * mm, bottomMargin=18 * mm)
    document.build(story, onFirstPage=_footer, onLaterPages=_footer)
    return out.getvalue()
