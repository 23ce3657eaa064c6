"""What ``leaddb.fastapi.install`` does to an app's OpenAPI (no server needed: nothing runs)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, Query
from pydantic import BaseModel, Field, JsonValue

from leaddb.fastapi import PROBLEM_MEDIA_TYPE, install, problem_responses


class Note(BaseModel):
    text: str
    code: Annotated[str, Field(pattern="^[A-Z]+$")]
    extra: dict[str, JsonValue] = Field(default_factory=dict)


def openapi() -> dict[str, Any]:
    app = FastAPI()
    install(app)

    @app.post("/notes", responses=problem_responses(409))
    async def create(note: Note, tag: Annotated[str | None, Query()] = None) -> Note:
        return note

    return app.openapi()


def test_strings_without_rules_are_declared_without_nul_and_the_others_keep_theirs() -> None:
    schemas = openapi()["components"]["schemas"]
    properties = schemas["Note"]["properties"]
    assert properties["text"]["pattern"] == "^[^\\u0000]*$"
    assert properties["code"]["pattern"] == "^[A-Z]+$"
    assert properties["extra"]["propertyNames"] == {"pattern": "^[^\\u0000]*$"}
    json_value = schemas["JsonValue"]["anyOf"]
    assert {"type": "string", "pattern": "^[^\\u0000]*$"} in json_value


def test_optional_parameters_are_left_out_rather_than_null() -> None:
    operation = openapi()["paths"]["/notes"]["post"]
    (tag,) = operation["parameters"]
    assert tag["schema"]["type"] == "string"
    assert "anyOf" not in tag["schema"]


def test_fastapis_422_and_the_declared_answers_are_problems() -> None:
    document = openapi()
    responses = document["paths"]["/notes"]["post"]["responses"]
    problem = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    assert responses["422"]["content"] == problem
    assert responses["409"]["content"] == problem
    assert "HTTPValidationError" not in document["components"]["schemas"]
    assert document["components"]["schemas"]["ProblemIssue"]["required"] == ["loc", "msg", "type"]
