"""The platform routes the client calls, as metric labels and rate-limit buckets (never ids),
each classed by what it does to the platform (which decides what may be resent)."""

from __future__ import annotations

from codema.transport import Effect, Endpoint

DEPLOY = Endpoint("deploy", "POST", Effect.CREATE)
STATUS = Endpoint("status", "GET", Effect.READ)
STOP = Endpoint("stop", "DELETE", Effect.IDEMPOTENT)
LIST_DEPLOYMENTS = Endpoint("list_deployments", "GET", Effect.READ)
BULK_STOP = Endpoint("bulk_stop", "POST", Effect.IDEMPOTENT)
CREATE_SESSION = Endpoint("create_session", "POST", Effect.CREATE)
GET_SESSION = Endpoint("get_session", "GET", Effect.READ)
DELETE_SESSION = Endpoint("delete_session", "DELETE", Effect.IDEMPOTENT)
SESSION_USERS = Endpoint("session_users", "GET", Effect.READ)
# Adding the same players twice could take their Seat sockets twice: not resent after ambiguity.
ADD_SESSION_USERS = Endpoint("add_session_users", "PUT", Effect.CREATE)
REMOVE_SESSION_USERS = Endpoint("remove_session_users", "DELETE", Effect.IDEMPOTENT)
LIST_SESSIONS = Endpoint("list_sessions", "GET", Effect.READ)
# A second retrieval key for the same question costs nothing: safe to resend.
TELEMETRY_REQUEST = Endpoint("telemetry_request", "POST", Effect.IDEMPOTENT)
TELEMETRY_RESULT = Endpoint("telemetry_result", "GET", Effect.READ)
LOCATIONS = Endpoint("locations", "GET", Effect.READ)
IP_LOOKUP = Endpoint("ip_lookup", "GET", Effect.READ)
IPS_LOOKUP = Endpoint("ips_lookup", "POST", Effect.READ)
CREATE_APP = Endpoint("create_app", "POST", Effect.CREATE)
GET_APP = Endpoint("get_app", "GET", Effect.READ)
LIST_APPS = Endpoint("list_apps", "GET", Effect.READ)
CREATE_APP_VERSION = Endpoint("create_app_version", "POST", Effect.CREATE)
GET_APP_VERSION = Endpoint("get_app_version", "GET", Effect.READ)
LIST_APP_VERSIONS = Endpoint("list_app_versions", "GET", Effect.READ)

ALL = (
    DEPLOY,
    STATUS,
    STOP,
    LIST_DEPLOYMENTS,
    BULK_STOP,
    CREATE_SESSION,
    GET_SESSION,
    DELETE_SESSION,
    SESSION_USERS,
    ADD_SESSION_USERS,
    REMOVE_SESSION_USERS,
    LIST_SESSIONS,
    TELEMETRY_REQUEST,
    TELEMETRY_RESULT,
    LOCATIONS,
    IP_LOOKUP,
    IPS_LOOKUP,
    CREATE_APP,
    GET_APP,
    LIST_APPS,
    CREATE_APP_VERSION,
    GET_APP_VERSION,
    LIST_APP_VERSIONS,
)
