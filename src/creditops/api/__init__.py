"""The HTTP entry point: FastAPI app factory, routes, auth, problem handlers, metrics.

Thin by design: a route parses, calls one service function and maps the result. Only this
package raises or returns HTTP concepts; services raise domain errors.
"""
