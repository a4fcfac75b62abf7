"""The copilot chat and its trade proposals.

The dashboard never places an order: a proposal the user confirms (by typing its symbol) becomes an
``enter`` command in the bot's durable inbox, and the bot's own filters, risk gate and sizing decide
whether and how big it trades. Chat calls are paid from the same daily budget as the bot's advisor.
"""
from __future__ import annotations

import secrets
import time
from typing import Any

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from mraster.ai import chat
from mraster.ai.budget import SectionLedger, daily_budget
from mraster.ai.calls import paid_call
from mraster.ai.llm import client_for
from mraster.dashboard.context import DashboardContext, get_ctx
from mraster.dashboard.routes.actions import Confirm, append_command, new_command, queued
from mraster.domain import shown
from mraster.logs import mask
from mraster.words import catalogue, speaker

router = APIRouter(prefix="/api/ai", tags=["ai"])
LOG_KEPT, PROPOSALS_KEPT = 100, 40
NO_KEY = ("answered by rules: no chat key (ASTER_CHAT_OPENAI_API_KEY or ASTER_OPENAI_API_KEY) and "
          "no ASTER_AI_BASE_URL")


class ChatIn(BaseModel):
    message: str = Field(min_length=1, max_length=2000)
    lang: str = Field("en", pattern=r"^[a-z]{2}$", description="the page's language: rule "
                      "answers and the AI's reply use it")


@router.post("/chat")
async def post_chat(body: ChatIn, ctx: DashboardContext = Depends(get_ctx)) -> dict[str, Any]:
    s = ctx.settings_lenient()[0]
    doc = ctx.state_doc()
    budget = daily_budget(s, SectionLedger(doc, "ai_budget"))
    state = ctx.read_state()[0]  # parsed once per change of the file, shared with the page
    c = chat.context(state, budget.view(state.get("ai_budget")))
    known = sorted(set(state.get("market", {})) |
                   {p["symbol"] for p in state.get("positions", {}).values()})
    reply, source, note = None, "rules", NO_KEY
    llm = client_for(s, chat=True, timeout=30)
    if llm is not None:
        try:
            ans = await paid_call(llm, budget, chat.SYSTEM,
                                  chat.llm_user_message(body.message, c, state.get("chat", {}).get("log", []),
                                                        catalogue(body.lang).get("name", "English")),
                                  chat.ChatReply, "chat")
        finally:
            await llm.close()
        reply, source, note = (ans.value, "ai", None) if ans.value else (None, "rules", f"answered by rules: {ans.why}")
    reply = reply or chat.rule_reply(body.message, c, known, speaker(body.lang))
    proposal = None
    if reply.proposal is not None:
        if reply.proposal.symbol in known:
            proposal = {"id": secrets.token_hex(6), **reply.proposal.model_dump(),
                        "created": int(time.time() * 1000), "status": "proposed"}
        else:
            note = f"a proposal for {reply.proposal.symbol} was dropped: the bot does not trade it"
    now = int(time.time() * 1000)
    entries = [{"role": "user", "content": mask(body.message), "time": now},
               {"role": "assistant", "content": mask(reply.reply), "time": now, "source": source,
                "note": note, "proposal": proposal and proposal["id"]}]

    def record(d: dict[str, Any]) -> None:
        ch = d.setdefault("chat", {})
        ch["log"] = (ch.get("log", []) + entries)[-LOG_KEPT:]
        if proposal:
            ch["proposals"] = (ch.get("proposals", []) + [proposal])[-PROPOSALS_KEPT:]
    await run_in_threadpool(doc.update, record)
    return {"reply": entries[1]["content"], "source": source, "note": note, "proposal": proposal,
            "budget": await run_in_threadpool(budget.snapshot)}


def _proposal(d: dict[str, Any], pid: str) -> dict[str, Any]:
    for p in d.get("chat", {}).get("proposals", []):
        if p["id"] == pid:
            return p
    raise HTTPException(404, f"no chat proposal with id {shown(pid)}")


@router.post("/proposals/{pid}/confirm")
def confirm(pid: str, body: Confirm, ctx: DashboardContext = Depends(get_ctx)) -> dict[str, Any]:
    """Send a proposal to the bot, once; the check and the send are one locked update."""
    sent: list[dict[str, Any]] = []

    def change(d: dict[str, Any]) -> None:
        p = _proposal(d, pid)
        if p["status"] != "proposed":
            raise HTTPException(409, f"this proposal was already {p['status']}")
        if body.confirm != p["symbol"]:
            raise HTTPException(422, f"confirm: type the symbol ({p['symbol']}) to send this trade "
                                     "to the bot")
        cmd = new_command("enter", p["symbol"], side=p["side"], proposal=pid)
        append_command(d, cmd)
        p.update(status="sent", command_id=cmd["id"])
        sent.append(cmd)
    ctx.state_doc().update(change)
    return queued(ctx, sent[0])


@router.post("/proposals/{pid}/dismiss")
def dismiss(pid: str, ctx: DashboardContext = Depends(get_ctx)) -> dict[str, Any]:
    def change(d: dict[str, Any]) -> None:
        p = _proposal(d, pid)
        if p["status"] == "proposed":
            p["status"] = "dismissed"
    ctx.state_doc().update(change)
    return {"dismissed": pid}
