"""The OpenAPI 3 description of the HTTP port (served at ``/openapi.json``), kept as data:
the schemas and paths below, built once when the server starts."""

from __future__ import annotations

from typing import Any

from frontend.http.protocol import LIMIT_CODES, REASONS


def openapi() -> dict[str, Any]:
    def env_schema(data: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "object",
            "required": ["msg", "code", "data"],
            "properties": {
                "msg": {"type": "string"},
                "code": {"type": "integer"},
                "data": data,
                "count": {"type": "integer"},
            },
        }

    error = {"$ref": "#/components/schemas/Error"}
    failed = {
        "type": "array",
        "items": {
            "type": "object",
            "required": ["fe", "message"],
            "properties": {"fe": {"type": "string"}, "message": {"type": "string"}},
        },
    }
    table = env_schema(
        {
            "type": "object",
            "required": ["column_names", "rows", "failed_fes"],
            "properties": {
                "column_names": {"type": "array", "items": {"type": "string"}},
                "rows": {
                    "type": "array",
                    "items": {"type": "array", "items": {"type": "string", "nullable": True}},
                },
                "failed_fes": failed,
            },
        }
    )

    def responses(ok: dict[str, Any], *codes: int) -> dict[str, Any]:
        out: dict[str, Any] = {"200": {"description": "success", "content": {"application/json": {"schema": ok}}}}
        out["401"] = {
            "description": "no or wrong credentials",
            "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
            "content": {"application/json": {"schema": error}},
        }
        for code in sorted({*LIMIT_CODES, *codes}):
            out[str(code)] = {"description": REASONS[code], "content": {"application/json": {"schema": error}}}
        return out

    def plain(*codes: int) -> dict[str, Any]:
        out: dict[str, Any] = {
            str(code): {"description": REASONS[code], "content": {"text/plain": {"schema": {"type": "string"}}}}
            for code in codes
        }
        for code in LIMIT_CODES:
            out[str(code)] = {"description": REASONS[code], "content": {"application/json": {"schema": error}}}
        return out

    is_all_node = {
        "name": "is_all_node",
        "in": "query",
        "required": False,
        "schema": {"type": "boolean", "default": True},
        "description": "every FE (true) or this FE only (false)",
    }
    security: list[dict[str, list[str]]] = [{"basic": []}]
    session_row = {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "user": {"type": "string"},
            "host": {"type": "string"},
            "login_time": {"type": "string"},
            "catalog": {"type": "string"},
            "db": {"type": "string"},
            "command": {"type": "string"},
            "time": {"type": "integer"},
            "state": {"type": "string"},
            "query_id": {"type": "string"},
            "info": {"type": "string"},
            "fe": {"type": "string"},
            "cloud_cluster": {"type": "string", "nullable": True},
            "backend_host": {"type": "string", "nullable": True},
            "backend_thread": {"type": "integer", "nullable": True},
        },
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "fecluster FE HTTP API",
            "version": "0.1.0",
            "description": "Doris-compatible session and query REST, cluster-wide kills, the sessions page's data.",
        },
        "components": {
            "securitySchemes": {"basic": {"type": "http", "scheme": "basic"}},
            "schemas": {
                "Error": env_schema({"type": "string"}),
            },
        },
        "paths": {
            "/healthz": {"get": {"summary": "200 while serving, 503 while draining", "responses": plain(200, 503)}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": plain(200)}},
            "/favicon.ico": {
                "get": {
                    "summary": "no icon (204), so that browsers stop asking",
                    "responses": {**plain(), "204": {"description": REASONS[204]}},
                }
            },
            "/rest/v1/session": {
                "get": {
                    "summary": "sessions on this FE (Doris)",
                    "security": security,
                    "responses": responses(table),
                }
            },
            "/rest/v1/session/all": {
                "get": {
                    "summary": "sessions on every FE (Doris); FEs that did not answer are in failed_fes",
                    "security": security,
                    "responses": responses(table),
                }
            },
            "/rest/v2/manager/query/current_queries": {
                "get": {
                    "summary": "running statements (Doris)",
                    "security": security,
                    "parameters": [is_all_node],
                    "responses": responses(table),
                }
            },
            "/rest/v2/manager/query/kill/{query_id}": {
                "post": {
                    "summary": "KILL QUERY '<query_id>' (Doris); routed to the owner FE, which checks privileges",
                    "security": security,
                    "parameters": [
                        {"name": "query_id", "in": "path", "required": True, "schema": {"type": "string"}},
                        is_all_node,
                    ],
                    "responses": responses(
                        env_schema(
                            {
                                "type": "object",
                                "required": ["query_id", "owner_fe"],
                                "properties": {"query_id": {"type": "string"}, "owner_fe": {"type": "string"}},
                            }
                        ),
                        403,
                        404,
                        503,
                    ),
                }
            },
            "/rest/v2/manager/query/trace_id/{trace_id}": {
                "get": {
                    "summary": "the query id of a trace id (Doris)",
                    "security": security,
                    "parameters": [
                        {"name": "trace_id", "in": "path", "required": True, "schema": {"type": "string"}},
                        is_all_node,
                    ],
                    "responses": responses(env_schema({"type": "string"}), 404),
                }
            },
            "/api/sessions/{connection_id}/kill": {
                "post": {
                    "summary": "KILL [CONNECTION] or KILL QUERY by connection id, routed to the owner FE",
                    "security": security,
                    "parameters": [
                        {
                            "name": "connection_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "integer", "minimum": 0, "maximum": 4294967295},
                        },
                        {
                            "name": "kind",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string", "enum": ["connection", "query"], "default": "connection"},
                        },
                    ],
                    "responses": responses(
                        env_schema(
                            {
                                "type": "object",
                                "required": ["connection_id", "kind", "owner_fe"],
                                "properties": {
                                    "connection_id": {"type": "integer"},
                                    "kind": {"type": "string", "enum": ["CONNECTION", "QUERY"]},
                                    "owner_fe": {"type": "string"},
                                },
                            }
                        ),
                        403,
                        404,
                        503,
                    ),
                }
            },
            "/api/cluster": {
                "get": {
                    "summary": "what the sessions page shows: every session, the FEs and their health",
                    "security": security,
                    "responses": responses(
                        env_schema(
                            {
                                "type": "object",
                                "required": ["fe", "user", "is_admin", "sessions", "failed_fes", "members"],
                                "properties": {
                                    "fe": {"type": "string"},
                                    "user": {"type": "string"},
                                    "is_admin": {"type": "boolean"},
                                    "redis_ok": {"type": "boolean"},
                                    "time": {"type": "string"},
                                    "sessions": {"type": "array", "items": session_row},
                                    "failed_fes": failed,
                                    "members": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "properties": {
                                                "address": {"type": "string"},
                                                "mysql_address": {"type": "string"},
                                                "server_id": {"type": "integer"},
                                                "version": {"type": "string"},
                                                "started_at": {"type": "string"},
                                                "status": {"type": "string", "enum": ["up", "not answering"]},
                                                "this_fe": {"type": "boolean"},
                                            },
                                        },
                                    },
                                },
                            }
                        )
                    ),
                }
            },
            "/api/audit": {
                "get": {
                    "summary": "the newest kill audit entries (ADMIN_PRIV)",
                    "security": security,
                    "parameters": [
                        {
                            "name": "limit",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50},
                        }
                    ],
                    "responses": responses(
                        env_schema(
                            {"type": "array", "items": {"type": "object", "additionalProperties": {"type": "string"}}}
                        ),
                        403,
                        503,
                    ),
                }
            },
        },
    }
