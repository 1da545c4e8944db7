"""Fuzzing of the HTTP API (schemathesis) and the WebSocket protocol (hypothesis), issue 7."""
