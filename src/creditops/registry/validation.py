"""Checks of what callers hand the registry: names, aliases, version references, artifact
paths and the files of a registration (including the bundle's sha256).

Everything here runs before MLflow is touched, so bad input fails fast with
:class:`~creditops.errors.InvalidInputError` (or :class:`~creditops.errors.IntegrityError`
for a bundle that does not match its declared hash). The value types are in
:mod:`creditops.registry.records`; the registry itself in :mod:`creditops.registry.mlflow_registry`.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path, PurePosixPath

from creditops.errors import IntegrityError, InvalidInputError
from creditops.registry.records import BUNDLE_SHA_TAG, LATEST, RegistrationRequest

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_ALIAS_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,254}$")
_VERSION_ALIAS_RE = re.compile(r"^[vV]\d+$")  # reserved by MLflow for version aliases


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise InvalidInputError(
            f"invalid model name {name!r}: use 1-64 letters, digits, '-', '_' or '.', "
            "starting with a letter or digit",
            field="name",
        )
    return name


def check_alias(alias: str) -> str:
    if not _ALIAS_RE.match(alias) or alias.lower() == LATEST or _VERSION_ALIAS_RE.match(alias):
        raise InvalidInputError(
            f"invalid alias {alias!r}: use letters, digits, '-' or '_', starting with a letter "
            "('latest' and 'v<number>' are reserved)",
            field="alias",
        )
    return alias


def check_version(name: str, version: str) -> str:
    version = str(version).strip()
    if not version.isdigit():
        raise InvalidInputError(
            f"invalid version {version!r} of {name}: expected a number", field="version"
        )
    return str(int(version))


def check_ref(name: str, ref: str) -> str:
    ref = str(ref).strip()
    if ref.isdigit():
        return str(int(ref))
    if ref.lower() == LATEST:
        return LATEST
    if not _ALIAS_RE.match(ref):
        raise InvalidInputError(
            f"invalid reference {ref!r} to a version of {name}: give a version number or an alias",
            field="version",
        )
    return ref


def check_artifact_path(path: str) -> str:
    parts = PurePosixPath(path).parts
    if not parts or path.startswith("/") or ".." in parts or "\\" in path:
        raise InvalidInputError(f"invalid artifact path {path!r}", field="artifact")
    return "/".join(parts)


def check_registration_files(request: RegistrationRequest) -> None:
    if not request.bundle_path.is_file():
        raise InvalidInputError(f"bundle file {request.bundle_path} does not exist", field="bundle")
    actual = sha256_file(request.bundle_path)
    if actual != request.bundle_sha256:
        raise IntegrityError(
            f"bundle {request.bundle_path} has sha256 {actual}, not the declared "
            f"{request.bundle_sha256}"
        )
    tagged = request.tags.get(BUNDLE_SHA_TAG)
    if tagged is not None and tagged != request.bundle_sha256:
        raise InvalidInputError(
            f"tag {BUNDLE_SHA_TAG}={tagged} contradicts the bundle's sha256", field="tags"
        )
    for sub_path, local in request.artifacts.items():
        check_artifact_path(sub_path)
        if not local.is_file():
            raise InvalidInputError(f"artifact file {local} does not exist", field="artifacts")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
