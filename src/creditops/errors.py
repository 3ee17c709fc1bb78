"""Domain error tree.

Every error carries a stable machine-readable ``code`` and a one-line ``message``.
Nothing here knows about HTTP status codes or process exit codes: the API maps errors
to problem+json responses and the CLI to a one-line message and an exit code.
"""

from __future__ import annotations

from collections.abc import Sequence


class CreditopsError(Exception):
    """Base class of every error creditops raises on purpose."""

    code = "creditops_error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:
        return self.message


class InvalidInputError(CreditopsError):
    """The caller gave something unusable (a bad file, a bad value, a bad option)."""

    code = "invalid_input"


class SpecError(InvalidInputError):
    """The data contract (spec YAML) is malformed."""

    code = "invalid_spec"


class ConfigError(InvalidInputError):
    """A gate profile, policy or other configuration file is malformed."""

    code = "invalid_config"


class DataError(InvalidInputError):
    """The data does not satisfy the spec.

    ``count`` and ``examples`` say how many rows (or columns) are affected and show a few,
    so that the user can find the problem in their file.
    """

    code = "invalid_data"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        count: int | None = None,
        examples: Sequence[object] = (),
    ) -> None:
        details = message
        if count is not None:
            details += f" ({count} affected"
            if examples:
                shown = ", ".join(repr(e) for e in list(examples)[:5])
                details += f"; e.g. {shown}"
            details += ")"
        super().__init__(details, field=field)
        self.count = count
        self.examples = list(examples)[:5]


class NotFoundError(CreditopsError):
    """Something that was asked for does not exist."""

    code = "not_found"


class ModelNotFoundError(NotFoundError):
    code = "model_not_found"

    def __init__(self, name: str) -> None:
        super().__init__(f"Model {name!r} is not registered.", field="name")
        self.name = name


class ModelVersionNotFoundError(NotFoundError):
    code = "model_version_not_found"

    def __init__(self, name: str, version: str) -> None:
        super().__init__(f"Model {name!r} has no version or alias {version!r}.", field="version")
        self.name = name
        self.version = version


class ConflictError(CreditopsError):
    """The request is valid but the current state forbids it (a deployment already in
    progress, an action its state does not allow)."""

    code = "conflict"


class IntegrityError(CreditopsError):
    """A stored artefact does not match the hash recorded when it was registered."""

    code = "integrity_error"


class TrainingError(CreditopsError):
    """Training could not produce a model (e.g. too few rows of a class after cleaning)."""

    code = "training_error"


class ServiceCallError(InvalidInputError):
    """A running creditops service named by the caller (``--url``) could not be used: its
    answer was not what the operation needs (e.g. not a decision)."""

    code = "service_call_failed"

    def __init__(self, message: str, *, url: str, field: str | None = "url") -> None:
        super().__init__(message, field=field)
        self.url = url


class ServiceUnreachableError(ServiceCallError):
    """Nothing answered at the service's address (refused, unknown host, timed out)."""

    code = "service_unreachable"


class ApiKeyRefusedError(ServiceCallError):
    """The service refused the API key given: unknown or revoked, or lacking the scope."""

    code = "api_key_refused"

    def __init__(self, message: str, *, url: str) -> None:
        super().__init__(message, url=url, field="api_key")


class ModelNotServedError(NotFoundError):
    """A running service does not serve the model asked for."""

    code = "model_not_served"

    def __init__(self, name: str, url: str) -> None:
        super().__init__(f"the service at {url} does not serve model {name!r}", field="name")
        self.name = name
        self.url = url
