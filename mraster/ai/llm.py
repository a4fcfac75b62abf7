"""LLM access through the ``openai`` client, for OpenAI or any compatible server.

Replies must be one JSON object that validates against the caller's pydantic model; a malformed
reply gets one more try, then ``AIUnavailable`` (the caller's rule-based plan decides). Retries on
429/5xx are not done here: every attempt costs money and goes through the budget first.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

T = TypeVar("T", bound=BaseModel)


class AIUnavailable(Exception):
    """No usable answer: the message says why (never with a key in it)."""


@dataclass
class Usage:
    prompt_tokens: int
    completion_tokens: int


def parse_json(text: str) -> Any:
    """A JSON object from a reply: plain, in a ```json fence, or the first {...} in the text."""
    text = text.strip()
    for candidate in (text, *re.findall(r"```(?:json)?\s*(\{.*?\})\s*```", text, re.S)):
        try:
            return json.loads(candidate)
        except ValueError:
            pass
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        return json.loads(text[start:end + 1])
    raise ValueError("no JSON object in the reply")


class LLMClient:
    def __init__(self, *, api_key: str, model: str, base_url: str = "", temperature: float = 0.3,
                 timeout: float = 45.0, prices: dict[str, tuple[float, float]] | None = None,
                 debug_file: str | None = None) -> None:
        from openai import AsyncOpenAI

        self.model = model
        self.prices = prices or {}  # the user's own per-token prices (ASTER_AI_PRICES)
        self.debug_file = debug_file  # ASTER_AI_DEBUG_STATE: every call dumped, secrets masked
        self.temperature = temperature
        self.structured = True  # ask for JSON-schema output until the server refuses it
        # a local server needs no key, but the client insists on one
        self._client = AsyncOpenAI(api_key=api_key or "not-needed", base_url=base_url or None,
                                   timeout=timeout, max_retries=0)

    async def ask(self, system: str, user: str, schema: type[T],
                  what: str = "plan") -> tuple[T, list[Usage]]:
        """The validated reply (``what`` names it in the error) and the token usage of every
        attempt (each one is paid for).

        Structured output (a JSON schema) is asked for first; a server that refuses it (HTTP 400)
        is asked for a plain JSON object from then on, and the reply is validated here."""
        from openai import APIError, BadRequestError

        usages: list[Usage] = []
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        last = "no reply"
        attempts = 0
        while attempts < 2:
            try:
                reply = await self._client.chat.completions.create(
                    model=self.model, messages=messages, temperature=self.temperature,
                    response_format=self._format(schema))
            except BadRequestError:
                if not self.structured:
                    raise AIUnavailable("the AI service answered BadRequestError") from None
                self.structured = False  # no JSON-schema support here: plain JSON from now on
                continue
            except APIError as exc:
                raise AIUnavailable(f"the AI service answered {type(exc).__name__}") from None
            attempts += 1
            if reply.usage:
                usages.append(Usage(reply.usage.prompt_tokens, reply.usage.completion_tokens))
            content = reply.choices[0].message.content or ""
            try:
                return schema.model_validate(parse_json(content)), usages
            except (ValueError, ValidationError) as exc:
                last = str(exc).splitlines()[0]
                messages = messages + [{"role": "assistant", "content": content[:2000]},
                                       {"role": "user", "content": "That was not valid. Reply "
                                        "with one JSON object matching the schema, nothing else."}]
        raise AIUnavailable(f"the AI reply was not a valid {what} twice ({last})")

    def _format(self, schema: type[BaseModel]) -> dict[str, Any]:
        if not self.structured:
            return {"type": "json_object"}
        js = schema.model_json_schema()
        js.get("properties", {}).pop("source", None)  # set by us, not by the model
        return {"type": "json_schema", "json_schema": {"name": schema.__name__, "schema": js}}

    async def close(self) -> None:
        await self._client.close()


def client_for(s, *, chat: bool = False, timeout: float | None = None) -> LLMClient | None:
    """The configured client, or None when there is neither a key nor a compatible server (then
    every copilot is rule-based). Chat prefers ``ASTER_CHAT_OPENAI_API_KEY``."""
    key = (s["ASTER_CHAT_OPENAI_API_KEY"] if chat else "") or s["ASTER_OPENAI_API_KEY"]
    if not (key or s["ASTER_AI_BASE_URL"]):
        return None
    from mraster.settings import parse_prices

    return LLMClient(api_key=key, model=s["ASTER_AI_MODEL"], base_url=s["ASTER_AI_BASE_URL"],
                     temperature=s["ASTER_AI_TEMPERATURE"],
                     timeout=timeout or s["ASTER_AI_PLAN_TIMEOUT_SECONDS"],
                     prices=parse_prices(s["ASTER_AI_PRICES"]),
                     debug_file=str(Path(s["ASTER_STATE_FILE"]).with_name("ai_debug.jsonl"))
                     if s["ASTER_AI_DEBUG_STATE"] else None)
