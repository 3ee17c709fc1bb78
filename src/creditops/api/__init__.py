"""The HTTP entry point: the FastAPI app factory (``app``, the one module that wires
adapters), dependencies (``deps``), one router per resource (``routes/``), API schemas,
authentication, problem+json handlers, Prometheus metrics and the predict fast path.

Thin by design: a route parses, calls one service function and maps the result. Only this
package raises or returns HTTP concepts; services raise domain errors. Outside ``app.py`` it
must not import ``store``, ``registry`` or ``alerts`` (an import-linter contract).
"""
