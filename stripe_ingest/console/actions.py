"""The console's actions (POST): log in and out, replay, resolve, and the bulk actions on a group
of dead letters (a dry-run count first, then a confirmation). The rules are the CLI's
(`stripe_ingest.cli.operations`); every action is audited with the operator's name."""

from __future__ import annotations

from urllib.parse import quote

import structlog
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from shared.settings import Settings
from stripe_ingest.cli import operations, store
from stripe_ingest.cli.operations import Refused
from stripe_ingest.console import queries
from stripe_ingest.console.auth import COOKIE, SESSION_SECONDS, clean_operator, safe_next
from stripe_ingest.console.web import (
    auth_of,
    back,
    check_csrf,
    operator_of,
    problem,
    read_form,
    render,
    settings_of,
)

log = structlog.get_logger("console.actions")


async def login(request: Request) -> Response:
    form = await read_form(request)
    auth = auth_of(request)
    target = safe_next(form.get("next"))
    if not auth.token_matches(form.get("token", "").encode()):
        log.warning("console.login_refused")
        context = {"next": target, "error": "That is not the console's token."}
        return render(request, "login.html", context, status=401)
    session, cookie = auth.new_session(clean_operator(form.get("operator", "")))
    log.info("console.login", operator=session.operator)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        cookie,
        max_age=SESSION_SECONDS,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


async def logout(request: Request) -> Response:
    check_csrf(request, await read_form(request))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, httponly=True, samesite="strict")
    return response


def _replay_one(settings: Settings, event_id: str, who: str, force: bool) -> list[str]:
    with store.session(settings.database_url) as conn:
        operations.check_replayable(conn, [event_id], force)
        result = operations.replay(
            conn,
            settings,
            [event_id],
            who=who,
            mode="ids",
            described={"ids": [event_id]},
            force=force,
            via="console",
        )
    if result.warning:
        log.warning("console.enqueue_failed", event_id=event_id)
    return result.ids


async def replay(request: Request) -> Response:
    event_id = request.path_params["event_id"]
    form = await read_form(request)
    check_csrf(request, form)
    who, force = operator_of(request), form.get("force") == "on"
    try:
        done = await run_in_threadpool(_replay_one, settings_of(request), event_id, who, force)
    except Refused as e:
        return problem(request, 409, str(e))
    log.info("console.replayed", operator=who, event_id=event_id, replayed=len(done))
    return back(f"/events/{quote(event_id, safe='')}", "replayed")


def _resolve(settings: Settings, ids: list[str], who: str, reason: str) -> operations.Resolved:
    with store.session(settings.database_url) as conn:
        return operations.resolve(conn, ids, who=who, reason=reason, via="console")


async def resolve(request: Request) -> Response:
    event_id = request.path_params["event_id"]
    form = await read_form(request)
    check_csrf(request, form)
    who = operator_of(request)
    try:
        reason = operations.clean_reason(form.get("reason", ""))
    except Refused as e:
        return problem(request, 400, str(e))
    try:
        result = await run_in_threadpool(_resolve, settings_of(request), [event_id], who, reason)
    except Refused as e:
        return problem(request, 409, str(e))
    log.info("console.resolved", operator=who, event_ids=result.ids)
    target = safe_next(form.get("next")).split("?")[0]
    return back(target, "resolved" if result.ids else "already-resolved")


def _dead_ids(settings: Settings, event_type: str, error: str) -> list[str]:
    with store.session(settings.database_url) as conn:
        return store.dead_ids(conn, store.Filter(type=event_type, error=error))


def _bulk_replay(settings: Settings, ids: list[str], flt: store.Filter, who: str) -> list[str]:
    with store.session(settings.database_url) as conn:
        result = operations.replay(
            conn, settings, ids, who=who, mode="dead", described=flt.as_json(), via="console"
        )
    return result.ids


async def bulk(request: Request) -> Response:
    """One group of dead letters (type and error): without `confirm`, the dry run (how many,
    which); with it, the action, if the count is still the one confirmed."""
    form = await read_form(request)
    check_csrf(request, form)
    settings: Settings = settings_of(request)
    action, event_type, error = form.get("action"), form.get("type", ""), form.get("error", "")
    if action not in ("replay", "resolve") or not event_type or not error:
        return problem(request, 400, "a bulk action needs action (replay or resolve), type, error")
    reason = form.get("reason", "")
    if action == "resolve":
        try:
            reason = operations.clean_reason(reason)
        except Refused as e:
            return problem(request, 400, str(e))
    context = {
        "action": action,
        "type": event_type,
        "error": error,
        "reason": reason,
        "threshold": settings.replay_confirm_threshold,
    }
    if form.get("confirm") != "yes":
        plan = await run_in_threadpool(queries.bulk_plan, settings, event_type, error)
        return render(request, "confirm.html", {**context, **plan})
    ids = await run_in_threadpool(_dead_ids, settings, event_type, error)
    if form.get("expected") != str(len(ids)) or (
        len(ids) > settings.replay_confirm_threshold and form.get("yes") != "on"
    ):
        # The group changed since the dry run, or a large one was not confirmed: ask again.
        plan = await run_in_threadpool(queries.bulk_plan, settings, event_type, error)
        changed = form.get("expected") != str(len(ids))
        return render(
            request, "confirm.html", {**context, **plan, "changed": changed, "asked": True}, 409
        )
    who = operator_of(request)
    if action == "replay":
        flt = store.Filter(type=event_type, error=error)
        done = await run_in_threadpool(_bulk_replay, settings, ids, flt, who)
        log.info("console.bulk_replayed", operator=who, event_type=event_type, count=len(done))
        return back("/dead-letters", "bulk-replayed", n=len(done))
    try:
        result = await run_in_threadpool(_resolve, settings, ids, who, reason)
    except Refused as e:
        return problem(request, 409, str(e))
    log.info("console.bulk_resolved", operator=who, event_type=event_type, count=len(result.ids))
    return back("/dead-letters", "bulk-resolved", n=len(result.ids))
