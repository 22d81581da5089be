"""The decompression bomb through the gateway (issue 11, item 3): a FLAC under 1 MB
holding over 4 hours of silence, and the same with its length hidden, are answered 413
`too_long` under the gateway's own duration limit and leave nothing behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.test_bad_uploads import _blobs, _counts
from tests.integration.test_gateway_authz import LiveGateway, add_therapist
from tests.unit.test_audio_limits import BOMB_S, LIMIT_S, hide_total_samples, write_silent_flac


@pytest.fixture(scope="module")
def gw(settings):
    with LiveGateway(settings, upload_max_duration_s=LIMIT_S, upload_rate_per_minute=1000) as gateway:
        gateway.therapist = gateway.call(add_therapist(gateway))
        yield gateway


@pytest.mark.parametrize("hidden_length", [False, True], ids=["declared", "hidden"])
def test_bomb_upload_is_refused_and_leaves_nothing(gw, tmp_path, hidden_length):
    bomb = write_silent_flac(tmp_path / "bomb.flac", BOMB_S)
    if hidden_length:
        bomb = hide_total_samples(bomb, tmp_path / "bomb_hidden.flac")
    before_blobs, before_rows = _blobs(gw), _counts(gw)
    with gw.client(gw.token(gw.therapist)) as client, open(bomb, "rb") as fh:
        response = client.post("/api/sessions/upload", files={"file": ("session.flac", fh, "audio/flac")})
    assert response.status_code == 413, response.text
    assert response.json()["code"] == "too_long" and "limit" in response.json()["detail"]
    assert _blobs(gw) == before_blobs and _counts(gw) == before_rows
    assert Path(bomb).stat().st_size < 1_000_000
