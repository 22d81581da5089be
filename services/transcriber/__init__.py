"""Transcriber: audio.uploaded -> transcript.ready (faster-whisper, word timings)."""
