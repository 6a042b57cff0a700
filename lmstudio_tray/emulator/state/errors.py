"""LM Studio's error bodies and status codes, per version, as documented in the API reference."""

from __future__ import annotations

from typing import Any

from lmstudio_tray.emulator.state.versioning import VersionProfile

AUTH_DOC_URL = "https://lmstudio.ai/docs/developer/core/authentication"
NO_MODELS_LOADED = "No models loaded. Please load a model in the developer page or use the 'lms load' command."


class ApiError(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body


def unexpected_endpoint(method: str, path: str) -> dict[str, Any]:
    # Served with HTTP 200: LM Studio logs "Returning 200 anyway".
    return {"error": f"Unexpected endpoint or method. ({method} {path})"}


def openai_error(message: str, *, param: str | None = "model", code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}


def unknown_model(profile: VersionProfile, name: str, known: list[str]) -> ApiError:
    if profile.legacy_model_errors:
        listing = "\n".join(known)
        message = f'Model "{name}" not found. Please specify a valid model.\n\nYour models:\n\n{listing}'
        return ApiError(404, openai_error(message, code="model_not_found"))
    examples = ", ".join(known)
    message = f'Invalid model identifier "{name}". Please specify a valid downloaded model (e.g., {examples}).'
    return ApiError(400, openai_error(message, code="model_not_found"))


def no_models_loaded(profile: VersionProfile) -> ApiError:
    status = 404 if profile.legacy_model_errors else 400
    if profile.string_error_bodies:
        return ApiError(status, {"error": NO_MODELS_LOADED})
    return ApiError(status, openai_error(NO_MODELS_LOADED))


def jit_load_failed(key: str, reason: str) -> ApiError:
    return ApiError(400, openai_error(f'Failed to load model "{key}". Error: {reason}'))


def v1_error(status: int, type_: str, message: str, **extra: Any) -> ApiError:
    return ApiError(status, {"error": {"type": type_, "message": message, **extra}})


def v1_missing_model() -> ApiError:
    return v1_error(
        400, "invalid_request", '"model" is required', code="missing_required_parameter", param="model"
    )


def v1_model_not_found(name: str) -> ApiError:
    return v1_error(404, "model_not_found", f'Model "{name}" not found.', code="model_not_found", param="model")


def v1_instance_not_found(identifier: str) -> ApiError:
    return v1_error(
        404, "model_not_found", f'No loaded model instance with identifier "{identifier}".',
        code="model_not_found", param="instance_id",
    )


def v1_load_failed(message: str) -> ApiError:
    return v1_error(400, "model_load_failed", message, code="model_load_failed")


def missing_token() -> ApiError:
    message = (
        "An LM Studio API token is required to make requests to this server, but none was provided using the "
        "Authorization header using the 'Bearer' scheme (i.e., 'Authorization: Bearer $LM_API_TOKEN'). "
        f"Learn more at: {AUTH_DOC_URL}."
    )
    return ApiError(401, {"error": {"type": "invalid_request", "code": "invalid_api_key", "message": message}})


def invalid_token() -> ApiError:
    message = (
        "The LM Studio API token provided using the Authorization header is invalid. "
        f"Learn more at: {AUTH_DOC_URL}."
    )
    return ApiError(401, {"error": {"type": "invalid_request", "code": "invalid_api_key", "message": message}})
