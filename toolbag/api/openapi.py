"""The OpenAPI document of the native job API, built from its pydantic models (:mod:`toolbag.api.schemas`).

Served at ``/openapi.json`` and kept in the repository as ``docs/openapi.json``; regenerate it with
``python -m toolbag.api.openapi > docs/openapi.json`` (a test checks the two are equal).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from toolbag.api import schemas

__all__ = ["openapi_document"]

API_VERSION = "1"  # the native API's version (not the package's: the committed document stays put)
_REF = "#/components/schemas/{model}"


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": _REF.format(model=model.__name__)}


def _json_content(model: type[BaseModel]) -> dict[str, Any]:
    return {"application/json": {"schema": _ref(model)}}


def _errors(*statuses: int) -> dict[str, Any]:
    reasons = {400: "Malformed JSON", 401: "No key, or a bad or revoked one", 403: "The key may not do this",
               404: "No such job (or not the key's caller's)", 409: "The job is not escalated",
               413: "Body too large", 422: "A field is invalid (the message names it)",
               429: "The key's rpm or the tier's queue depth is exceeded; see retry-after"}
    return {str(s): {"description": reasons[s], "content": _json_content(schemas.ErrorBody)} for s in statuses}


def _op(summary: str, ok: tuple[int, type[BaseModel]], errors: tuple[int, ...],
        body: type[BaseModel] | None = None, job_id: bool = False) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary,
                          "responses": {str(ok[0]): {"description": "OK", "content": _json_content(ok[1])},
                                        **_errors(401, *errors)}}
    if body is not None:
        op["requestBody"] = {"required": True, "content": _json_content(body)}
    if job_id:
        op["parameters"] = [{"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}]
    return op


def openapi_document() -> dict[str, Any]:
    """The document: every native path, its bodies and answers, and the bearer-key security scheme."""
    models: list[type[BaseModel]] = [
        schemas.JobCreate, schemas.JobBatch, schemas.JobCreated, schemas.BatchCreated, schemas.JobView,
        schemas.Cancelled, schemas.EscalationView, schemas.EscalationList, schemas.Resolve,
              schemas.Reject, schemas.Retry, schemas.Settled, schemas.ErrorBody]
    _, top = models_json_schema([(m, "validation") for m in models], ref_template=_REF)
    events = {"description": "Server-sent events: text, attempt_end, end",
              "content": {"text/event-stream": {"schema": {"type": "string"}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "toolbag native job API", "version": API_VERSION,
                 "description": "Jobs and the escalation inbox. The OpenAI- and Anthropic-compatible endpoints "
                                "(/v1/chat/completions, /v1/responses, /v1/messages, /v1/models) follow those "
                                "vendors' own documents."},
        "security": [{"bearer": []}],
        "paths": {
            "/jobs": {"post": _op("Submit a job", (201, schemas.JobCreated), (400, 403, 413, 422, 429),
                                  schemas.JobCreate)},
            "/jobs:batch": {"post": _op("Submit many jobs, all or none", (201, schemas.BatchCreated),
                                        (400, 403, 413, 422, 429), schemas.JobBatch)},
            "/jobs/{job_id}": {
                "get": _op("A job: status, output, every attempt and decision", (200, schemas.JobView), (404,),
                           job_id=True),
                "delete": _op("Cancel a job", (200, schemas.Cancelled), (404,), job_id=True),
            },
            "/jobs/{job_id}/events": {"get": {**_op("The job's streamed text and end", (200, schemas.JobView),
                                                    (404,), job_id=True),
                                              "responses": {"200": events, **_errors(401, 404)}}},
            "/escalations": {"get": {**_op("Escalated jobs, oldest first", (200, schemas.EscalationList),
                                           (403, 422)),
                                     "parameters": [{"name": "limit", "in": "query", "required": False,
                                                     "schema": {"type": "integer", "minimum": 1,
                                                                "maximum": 1000}}]}},
            "/escalations/{job_id}": {"get": _op("One escalated job", (200, schemas.EscalationView),
                                                 (403, 404, 409), job_id=True)},
            "/escalations/{job_id}/resolve": {"post": _op("Settle with a person's answer", (200, schemas.Settled),
                                                          (403, 404, 409, 422), schemas.Resolve, job_id=True)},
            "/escalations/{job_id}/reject": {"post": _op("Fail with a reason", (200, schemas.Settled),
                                                         (403, 404, 409, 422), schemas.Reject, job_id=True)},
            "/escalations/{job_id}/retry": {"post": _op("Send back to the fleet", (200, schemas.Settled),
                                                        (403, 404, 409, 422), schemas.Retry, job_id=True)},
        },
        "components": {"schemas": top.get("$defs", {}),
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                                      "description": "A key from `toolbag keys create`"}}},
    }


if __name__ == "__main__":
    print(json.dumps(openapi_document(), indent=2, sort_keys=True))
