"""Every Prometheus metric the service exports, in one catalogue (mirrored in the README).

Processes: web (`W`), scaler (`S`), worker (`K`). Labels are bounded: fleet, policy, endpoint,
kind, result, reason; never session, player or request ids. The web's uvicorn workers write their
samples under one PROMETHEUS_MULTIPROC_DIR per web instance and a scrape aggregates them; scaler and
worker (RQ's non-forking SimpleWorker) serve their own registry on --metrics-port; values read
from Redis at scrape time are in `fleet.collectors` (see `fleet.observability`).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SLOW_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)

# --- platform client (W, S, K) -----------------------------------------------------------------
PLATFORM_CALLS = Counter(
    "fleet_platform_calls_total", "Codema API calls by endpoint and result", ["endpoint", "result"]
)
PLATFORM_LATENCY = Histogram(
    "fleet_platform_call_duration_seconds",
    "Codema API call latency, one attempt",
    ["endpoint"],
    buckets=LATENCY_BUCKETS_S,
)
PLATFORM_RETRIES = Counter(
    "fleet_platform_retries_total", "Retried Codema API attempts", ["endpoint", "reason"]
)
PLATFORM_BACKOFF = Gauge(
    "fleet_platform_backoff_seconds", "Seconds left of the shared 429 back-off", multiprocess_mode="max"
)
PLATFORM_CIRCUIT_OPEN = Gauge(
    "fleet_platform_circuit_open",
    "1 while an endpoint's circuit breaker is open",
    ["endpoint"],
    multiprocess_mode="max",
)

# --- platform client admission (codema client) ---------------------------------------------------
# Time a call waited before it was sent: `backoff` = the shared 429 window, `bucket` = the
# endpoint's token bucket at the platform's documented rate.
PLATFORM_WAIT = Histogram(
    "fleet_platform_admission_wait_seconds",
    "Codema API call wait before sending, by reason",
    ["endpoint", "reason"],
    buckets=LATENCY_BUCKETS_S,
)

# --- allocator (W) -------------------------------------------------------------------------------
# result: linked (placed at once), waiting (queued for capacity), refused (503: no capacity can be
# made), unprocessable (pinned deployment unavailable, or the wait ran out), error (platform down).
ALLOC_PLACEMENTS = Counter("fleet_allocator_placements_total", "Session requests by result", ["result"])
ALLOC_RANK_REASON = Counter(
    "fleet_allocator_rank_reason_total", "What decided the candidate order (placement Reason)", ["reason"]
)
ALLOC_DECISION = Histogram(
    "fleet_allocator_decision_seconds",
    "Decide and reserve, without the platform call",
    buckets=(0.0005, *LATENCY_BUCKETS_S),
)
# path: immediate (placed in the request) or waited (linked later by the linker).
ALLOC_TIME_TO_SESSION = Histogram(
    "fleet_allocator_time_to_session_seconds",
    "From session request to a linked session",
    ["path"],
    buckets=(0.005, 0.01, 0.025, *SLOW_BUCKETS_S),
)
ALLOC_RESERVE_REFUSED = Counter(
    "fleet_allocator_reserve_refusals_total",
    "Reservations refused by the atomic check (a stale view met a full, draining or gone deployment)",
    ["reason"],
)
# result: hit (fresh, complete), partial, stale, miss.
ALLOC_TELEMETRY_CACHE = Counter(
    "fleet_allocator_telemetry_cache_total", "Telemetry cache lookups per player network", ["result"]
)
ALLOC_GEO_CACHE = Counter(
    "fleet_allocator_geo_cache_total", "IP location cache lookups per network", ["result"]
)
ALLOC_TELEMETRY_REQUESTS = Counter(
    "fleet_allocator_telemetry_requests_total", "Background telemetry measurements by result", ["result"]
)
# outcome: started, linked, unprocessable, deleted.
ALLOC_WAITS = Counter(
    "fleet_allocator_waits_total", "Sessions that waited for capacity, by outcome", ["outcome"]
)
ALLOC_WAITING = Gauge(
    "fleet_allocator_waiting_sessions",
    "Sessions waiting for capacity (seen by the linker)",
    multiprocess_mode="max",
)
ALLOC_SESSIONS_GONE = Counter(
    "fleet_allocator_sessions_gone_total",
    "Linked sessions ended because the platform no longer had them (allocator.audit)",
)
ALLOC_WEBHOOKS = Counter(
    "fleet_allocator_session_webhooks_total", "Client session webhooks by result", ["result"]
)

# --- autoscaler (S: scaler, K: worker jobs) -------------------------------------------------------
# The decision's inputs and outputs per policy (summed over its linked app versions), as Agones
# exports them; dashboards plot exactly these.
SCALER_CURRENT = Gauge(
    "fleet_scaler_current_deployments",
    "Live deployments of a policy (serving, pending, stopping, stuck)",
    ["fleet", "policy"],
    multiprocess_mode="mostrecent",
)
SCALER_DESIRED = Gauge(
    "fleet_scaler_desired_deployments",
    "Capacity deployments the policy should have",
    ["fleet", "policy"],
    multiprocess_mode="mostrecent",
)
SCALER_PENDING = Gauge(
    "fleet_scaler_pending_deployments",
    "Deployments still starting plus creates in flight",
    ["fleet", "policy"],
    multiprocess_mode="mostrecent",
)
SCALER_LIMITED = Gauge(
    "fleet_scaler_limited",
    "1 while a scale-up is cut short (maximum, back-off, account caps)",
    ["fleet", "policy"],
    multiprocess_mode="mostrecent",
)
SCALER_UTILISATION = Gauge(
    "fleet_scaler_utilisation_ratio",
    "(used + reserved + waiting sockets) / capacity of the policy",
    ["fleet", "policy"],
    multiprocess_mode="mostrecent",
)
SCALER_THRESHOLD = Gauge(
    "fleet_scaler_threshold_ratio",
    "The policy's threshold",
    ["fleet", "policy"],
    multiprocess_mode="mostrecent",
)
SCALER_DEGRADED = Gauge(
    "fleet_scaler_degraded",
    "1 while a policy backs off after deployments ended in ERROR",
    ["fleet", "policy"],
    multiprocess_mode="mostrecent",
)
SCALER_DECISIONS = Counter(
    "fleet_scaler_decisions_total", "Policy decisions by reason", ["fleet", "policy", "reason"]
)
SCALER_ACTIONS = Counter(
    "fleet_scaler_actions_total",
    "Scaler actions by kind (create, stop, decision) and result (enqueued, dry_run, created, rejected, ...)",
    ["kind", "result"],
)
SCALER_PASS_SECONDS = Histogram(
    "fleet_scaler_pass_duration_seconds",
    "One scaler pass: read state, decide, act",
    buckets=LATENCY_BUCKETS_S,
)
SCALER_EVENT_LAG_SECONDS = Histogram(
    "fleet_scaler_event_to_decision_seconds",
    "From an event on the stream to the end of the pass that handled it",
    buckets=LATENCY_BUCKETS_S,
)
SCALER_IS_LEADER = Gauge(
    "fleet_scaler_is_leader", "1 while this scaler holds the lease", multiprocess_mode="max"
)
SCALER_LEADER_CHANGES = Counter("fleet_scaler_leader_changes_total", "Times this scaler became the leader")
SCALER_RECONCILES = Counter(
    "fleet_scaler_reconciles_total", "Reconciles against the platform's list by result", ["result"]
)

# --- webhooks (W) --------------------------------------------------------------------------------
# kind: deployment | session | telemetry.
# result: transition (a state moved forward), update (facts stored, no transition), duplicate
# (nothing new), unknown_status (stored raw / nothing to apply), pending (a session callback kept
# until its mapping exists), unknown_session (mapped to no record of ours), rejected.
WEBHOOK_CALLBACKS = Counter(
    "fleet_webhook_callbacks_total", "Platform callbacks by kind and result", ["kind", "result"]
)
# reason: missing_secret, bad_secret, throttled (429), not_configured, too_large (413), malformed (400),
# missing_field / invalid_field (422), store_unavailable (503), client_disconnect (the caller hung up
# before its body was read), internal_error (500: a bug).
WEBHOOK_REJECTIONS = Counter(
    "fleet_webhook_rejections_total", "Platform callbacks refused, by kind and reason", ["kind", "reason"]
)
# state: the Status name (deployments), our session state (sessions), partial | complete (telemetry).
# Counted once per transition, whatever the number of deliveries.
WEBHOOK_TRANSITIONS = Counter(
    "fleet_webhook_transitions_total", "State transitions caused by platform callbacks", ["kind", "state"]
)
WEBHOOK_LATENCY = Histogram(
    "fleet_webhook_handling_duration_seconds",
    "Time from request to answer of a platform callback, all results",
    ["kind"],
    buckets=LATENCY_BUCKETS_S,
)
# reason: missing, null, invalid (usage unknown, never 0), clamped (usage above sockets).
WEBHOOK_USAGE_ANOMALIES = Counter(
    "fleet_webhook_usage_anomalies_total", "Callbacks whose sockets_usage was unknown or clamped", ["reason"]
)
