"""Apply parsed callbacks to the Store. Facts only: nothing here decides or calls the platform.

Logs: INFO for what ends something (a deployment terminated or failed, a session that could not
be linked), for unknown statuses and unusable usage; DEBUG for routine transitions, which the event
stream and `fleet_webhook_transitions_total` already record.

Every rule that makes a duplicate or a late callback harmless lives in the Store's atomic
operations (deployments: the `apply_report` script; sessions: `apply_platform_report`; telemetry:
`record_result`), which report whether *this* call made a transition; the side effects keyed on
that (events, wake-ups, transition metrics) therefore happen once per transition, not per delivery.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field

from fleet.bootstrap import Clock
from fleet.logging import event
from fleet.models import SessionState
from fleet.store import Store
from webhooks.batch import ReportBatcher
from webhooks.parse import CountNote, ParsedDeployment, ParsedSession, ParsedTelemetry

log = logging.getLogger("webhooks.ingest")


class Result(enum.StrEnum):
    TRANSITION = "transition"
    UPDATE = "update"
    DUPLICATE = "duplicate"
    UNKNOWN_STATUS = "unknown_status"
    PENDING = "pending"
    UNKNOWN_SESSION = "unknown_session"


@dataclass(frozen=True)
class Outcome:
    result: Result
    transitions: tuple[tuple[str, str], ...] = ()  # (kind, state), for the transition metric
    usage_notes: tuple[CountNote, ...] = field(default=())


class Ingest:
    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self.reports = ReportBatcher(store.deployments.apply_many)

    async def deployment(self, parsed: ParsedDeployment, via: str = "deployment") -> Outcome:
        report = parsed.report
        self._note_usage(parsed, via)
        applied = await self.reports.apply(report, self.clock())
        notes = (parsed.usage_note,) if parsed.usage_note else ()
        status = report.status
        if applied.transition:
            state = status.name if status is not None else "UNKNOWN"
            event(
                log,
                "webhook_transition",
                logging.INFO if status is not None and status.terminal else logging.DEBUG,
                kind="deployment",
                request_id=report.request_id,
                status=state,
                via=via,
            )
            return Outcome(Result.TRANSITION, (("deployment", state),), notes)
        if report.status_raw is not None and status is None:
            event(
                log,
                "webhook_unknown_status",
                logging.WARNING,
                kind="deployment",
                request_id=report.request_id,
                status_raw=report.status_raw,
            )
            return Outcome(Result.UNKNOWN_STATUS, (), notes)
        changed = applied.created or applied.usage_changed
        return Outcome(Result.UPDATE if changed else Result.DUPLICATE, (), notes)

    async def session(self, parsed: ParsedSession) -> Outcome:
        transitions: list[tuple[str, str]] = []
        notes: tuple[CountNote, ...] = ()
        deployment_changed = False
        if parsed.deployment is not None:
            dep = await self.deployment(parsed.deployment, via="session")
            transitions.extend(dep.transitions)
            notes = dep.usage_notes
            deployment_changed = dep.result in (Result.TRANSITION, Result.UPDATE)
        elif parsed.deployment_problem:
            event(
                log, "webhook_session_deployment_ignored", logging.WARNING, problem=parsed.deployment_problem
            )
        result = await self._session_state(parsed)
        if result.transitions:
            transitions.extend(result.transitions)
        if result.result is Result.DUPLICATE and deployment_changed:
            return Outcome(Result.UPDATE, tuple(transitions), notes)
        return Outcome(result.result, tuple(transitions), notes)

    async def _session_state(self, parsed: ParsedSession) -> Outcome:
        report = parsed.report
        psid = report.platform_session_id
        if report.state is None:
            if not parsed.status_known:
                event(
                    log,
                    "webhook_unknown_status",
                    logging.WARNING,
                    kind="session",
                    session=psid,
                    status_raw=report.status_raw,
                )
                return Outcome(Result.UNKNOWN_STATUS)
            return Outcome(Result.DUPLICATE)  # a pending platform status: nothing of ours changes
        ours = await self.store.sessions.resolve_platform_report(report)
        if ours is None:
            event(log, "webhook_session_parked", kind="session", session=psid, state=report.state.value)
            return Outcome(Result.PENDING)
        applied = await self.store.sessions.apply_platform_report(ours, report, self.clock())
        if not applied.found:
            event(log, "webhook_unknown_session", logging.WARNING, session=psid, session_id=ours)
            return Outcome(Result.UNKNOWN_SESSION)
        if not applied.transition or applied.state is None:
            return Outcome(Result.DUPLICATE)
        event(
            log,
            "webhook_transition",
            logging.INFO
            if applied.state in (SessionState.UNPROCESSABLE, SessionState.ERROR)
            else logging.DEBUG,
            kind="session",
            session_id=ours,
            state=applied.state.value,
            previous=applied.previous.value if applied.previous else None,
        )
        return Outcome(Result.TRANSITION, (("session", applied.state.value),))

    async def telemetry(self, parsed: ParsedTelemetry) -> Outcome:
        if parsed.skipped:
            event(
                log,
                "webhook_telemetry_skipped_scores",
                logging.WARNING,
                retrieval_key=parsed.retrieval_key,
                skipped=parsed.skipped,
            )
        changed = await self.store.telemetry.record_result(
            parsed.retrieval_key, parsed.scores, parsed.partial, self.clock()
        )
        if not changed:
            return Outcome(Result.DUPLICATE)
        state = "partial" if parsed.partial else "complete"
        event(
            log,
            "webhook_transition",
            kind="telemetry",
            retrieval_key=parsed.retrieval_key,
            state=state,
            scores=len(parsed.scores),
        )
        return Outcome(Result.TRANSITION, (("telemetry", state),))

    @staticmethod
    def _note_usage(parsed: ParsedDeployment, via: str) -> None:
        note = parsed.usage_note
        if note is None:
            return
        level = logging.WARNING if note in (CountNote.INVALID, CountNote.CLAMPED) else logging.INFO
        event(
            log,
            "webhook_usage_clamped" if note is CountNote.CLAMPED else "webhook_usage_unknown",
            level,
            request_id=parsed.report.request_id,
            reason=note.value,
            sent=parsed.raw_usage,
            sockets=parsed.report.sockets,
            via=via,
        )
