"""Intent rules (``schemas/intents.yaml``): for each intent, whether it makes a ticket, of which category,
through which workflow, and which facts must be known first — with the question (zh/en) the IVR or the bot
asks when one is missing."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from tickets.models import MissingField, Priority, Text


class RequiredField(BaseModel):
    model_config = ConfigDict(extra="forbid")

    field: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    prompt: Text


class IntentRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    create: bool = True
    category: str = Field(min_length=1, max_length=64)
    subject: Text
    department: str | None = Field(default=None, description="Skip dispatch rules: straight to this one")
    workflow: str | None = Field(default=None, description="Workflow template started with the ticket")
    min_confidence: float = Field(default=0.5, ge=0, le=1)
    priority: Priority | None = Field(default=None, description="At least this priority")
    required: list[RequiredField] = []

    def missing(self, entities: dict[str, str]) -> list[MissingField]:
        return [
            MissingField(field=item.field, prompt=item.prompt)
            for item in self.required
            if not entities.get(item.field)
        ]


class IntentRules(BaseModel):
    model_config = ConfigDict(extra="forbid")

    intents: dict[str, IntentRule]
