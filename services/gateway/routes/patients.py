"""Patients: a therapist's own list; nobody else's is ever visible (404, not 403)."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, HTTPException, Response

from services.gateway import queries
from services.gateway.deps import DB, ERRORS, State, Therapist, committing
from services.gateway.routes import sessions
from services.gateway.schemas import PatientCreate, PatientOut, PatientUpdate

router = APIRouter(tags=["patients"])


def _patient_out(row) -> PatientOut:
    return PatientOut(id=row.id, display_name=row.display_name, external_ref=row.external_ref, created_at=row.created_at)


@router.post("/api/patients", response_model=PatientOut, status_code=201, responses=ERRORS)
async def create_patient(body: PatientCreate, therapist_id: Therapist, db: DB) -> PatientOut:
    async with committing(db):
        row = await queries.insert_patient(db, therapist_id, body.display_name, body.external_ref)
    return _patient_out(row)


@router.get("/api/patients", response_model=list[PatientOut], responses=ERRORS)
async def list_patients(therapist_id: Therapist, db: DB) -> list[PatientOut]:
    return [_patient_out(r) for r in await queries.patients_of(db, therapist_id)]


@router.get("/api/patients/{patient_id}", response_model=PatientOut, responses=ERRORS)
async def get_patient(patient_id: UUID, therapist_id: Therapist, db: DB) -> PatientOut:
    row = await queries.owned_patient(db, patient_id, therapist_id)
    if row is None:
        raise HTTPException(404, "patient not found")
    return _patient_out(row)


@router.patch("/api/patients/{patient_id}", response_model=PatientOut, responses=ERRORS,
              summary="Rename a patient or change their reference")
async def update_patient(patient_id: UUID, body: PatientUpdate, therapist_id: Therapist, db: DB) -> PatientOut:
    values = body.model_dump(exclude_unset=True)
    if values.get("display_name", "") is None:
        raise HTTPException(422, "display_name cannot be null")
    if "external_ref" in values:
        values["external_ref"] = values["external_ref"] or None
    async with committing(db):
        row = (await queries.update_patient(db, patient_id, therapist_id, values) if values
               else await queries.owned_patient(db, patient_id, therapist_id))
        if row is None:
            raise HTTPException(404, "patient not found")
        await queries.audit(db, therapist_id, None, "patient.update", target_id=patient_id)
    return _patient_out(row)


@router.delete("/api/patients/{patient_id}", status_code=204, responses=ERRORS,
               summary="Delete the patient and every session of theirs (as DELETE /api/sessions/{id} does)")
async def delete_patient(patient_id: UUID, therapist_id: Therapist, state: State, db: DB) -> Response:
    if await queries.owned_patient(db, patient_id, therapist_id) is None:
        raise HTTPException(404, "patient not found")
    # Each session goes through the session route's own deletion (rows, outbox
    # session.deleted, audio, whatever else it destroys), one transaction each; a failure
    # part-way leaves the patient in place, so repeating the DELETE finishes the job.
    for session_id in await queries.session_ids_of_patient(db, patient_id, therapist_id):
        await sessions.delete_session(session_id, therapist_id, state, db)
    async with committing(db):
        await queries.delete_patient(db, patient_id)
        await queries.audit(db, therapist_id, None, "patient.delete", target_id=patient_id)
    return Response(status_code=204)
