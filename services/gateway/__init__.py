"""Gateway: REST + SSE + WebSocket API, auth, upload validation, exports, web page."""
