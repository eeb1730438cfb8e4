"""Every documented Hoiio result status, its category and what it means in plain English.

Pure data plus one lookup (``classify``); no I/O. Unknown statuses are classified ``FLOW_ERROR`` with
the raw status kept, so a new provider status is never silently taken for success.
``retry_now`` marks the statuses worth retrying within a request's few-second budget.

May import ``engine.providers.base`` and the standard library only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.providers.base import Category

SUCCESS = "success_ok"
#: The client's own statuses for answers that never came or could not be read.
ERROR_TIMEOUT = "error_timeout"
ERROR_CONNECTION = "error_connection"
ERROR_BAD_RESPONSE = "error_bad_response"


@dataclass(frozen=True)
class StatusInfo:
    status: str
    category: Category
    meaning: str
    retry_now: bool = False  # worth retrying at once (with backoff) inside the request budget
    known: bool = True


_OK = Category.OK
_RETRY = Category.RETRY
_OVER = Category.SESSION_OVER
_DEST = Category.DESTINATION
_FLOW = Category.FLOW_ERROR
_AUTH = Category.AUTH

_TABLE: tuple[tuple[str, Category, str], ...] = (
    (SUCCESS, _OK, "The request was accepted."),
    # Common to every endpoint.
    ("error_invalid_http_method", _FLOW, "The request used an HTTP method other than GET or POST."),
    ("error_malformed_params", _FLOW, "The request contained bytes Hoiio could not read."),
    ("error_invalid_access_token", _AUTH, "The access token is invalid, expired or revoked."),
    ("error_invalid_app_id", _AUTH, "The application ID is invalid."),
    ("error_rate_limit_exceeded", _RETRY, "Too many requests for this application; try again later."),
    ("error_internal_server_error", _RETRY, "Hoiio had an internal error."),
    # The message (msg) and its markup.
    ("error_msg_invalid_length", _FLOW, "The message is too long."),
    ("error_msg_cannot_convert_text", _FLOW, "Hoiio could not turn the message text into speech."),
    ("error_msg_download_failed", _FLOW, "Hoiio could not download the audio file in the message."),
    ("error_msg_invalid_file_format", _FLOW, "The audio file is not an 8 kHz mono mp3, wav or gsm file."),
    ("error_msg_invalid_file_size", _FLOW, "The audio file is larger than 10 MB."),
    ("error_msg_invalid_url", _FLOW, "The audio file URL in the message is not a valid http(s) URL."),
    ("error_msg_invalid_language", _FLOW, "The speech language in the message is not supported."),
    ("error_msg_invalid_gender", _FLOW, "The speech gender in the message is not supported."),
    ("error_msg_invalid_xml", _FLOW, "The message markup is not valid."),
    # Tag and notify URL.
    ("error_tag_invalid_length", _FLOW, "The tag is longer than 256 characters."),
    ("error_invalid_notify_url", _FLOW, "The notify URL is not a valid, fully-qualified http(s) URL."),
    ("error_unable_to_resolve_notify_url", _FLOW, "Hoiio could not resolve the notify URL's host name."),
    (
        "error_unable_to_complete_ssl_handshake_notify_url",
        _FLOW,
        "Hoiio could not complete the TLS handshake with the notify URL (incomplete certificate chain?).",
    ),
    # The IVR session.
    ("error_invalid_session", _OVER, "The session does not exist."),
    ("error_session_access_denied", _OVER, "The session belongs to another account or application."),
    ("error_session_ended", _OVER, "The session has ended or expired."),
    (
        "error_session_not_ready",
        _RETRY,
        "Hoiio is still executing the previous block for this session (or the call is on hold).",
    ),
    ("error_session_not_on_hold", _FLOW, "Unhold was sent for a session that is not on hold."),
    ("error_monitor_in_progress", _FLOW, "The session is already being monitored."),
    # Destinations, caller id and account limits.
    ("error_dest_invalid", _DEST, "The destination is not a valid phone number or conference room."),
    ("error_dest_not_supported", _DEST, "Calls to this destination are not supported."),
    ("error_number_not_supported", _DEST, "The number is not supported for this call."),
    ("error_caller_id_invalid", _DEST, "The caller ID is not one this account may use."),
    ("error_insufficient_credit", _DEST, "The account does not have enough credit for this call."),
    (
        "error_concurrent_call_limit_reached",
        _DEST,
        "The account already has the maximum number of active calls (8).",
    ),
    ("error_not_allowed_for_trial", _DEST, "Trial accounts cannot call this destination; top up first."),
    ("error_dest1_invalid", _DEST, "The first number (dest1) is not a valid phone number."),
    ("error_dest2_invalid", _DEST, "The second number (dest2) is not a valid phone number."),
    ("error_dest1_not_supported", _DEST, "Calls to the first number (dest1) are not supported."),
    ("error_dest2_not_supported", _DEST, "Calls to the second number (dest2) are not supported."),
    ("error_same_dest1_dest2", _DEST, "The two numbers of a call (dest1 and dest2) are the same."),
    (
        "error_call_service_not_available",
        _DEST,
        "The calling service is temporarily unavailable; try again in a few minutes.",
    ),
    # Block and call parameters.
    ("error_invalid_room", _FLOW, "The conference room ID is not valid (letters, digits, . and _; 32 max)."),
    ("error_invalid_max_digits", _FLOW, "The max_digits value is not a number from 0 to 255."),
    ("error_invalid_timeout", _FLOW, "The gather timeout is not valid."),
    ("error_invalid_attempts", _FLOW, "The number of gather attempts is not valid."),
    ("error_invalid_max_duration", _FLOW, "The max_duration value is not valid."),
    ("error_max_duration_invalid", _FLOW, "The max_duration value is not valid."),
    ("error_on_failure_invalid", _FLOW, "The on_failure value is neither 'hangup' nor 'continue'."),
    ("error_invalid_txn_ref", _FLOW, "The transaction reference does not exist."),
    ("error_txn_ref_invalid", _FLOW, "The transaction reference does not exist."),
    ("error_txn_ref_access_denied", _FLOW, "The transaction belongs to another account or application."),
    # The client's own, when no usable answer came back (after retries within the budget).
    (
        ERROR_TIMEOUT,
        _RETRY,
        "Hoiio did not answer in time; the request may or may not have been carried out.",
    ),
    (ERROR_CONNECTION, _RETRY, "The connection to Hoiio failed."),
    (ERROR_BAD_RESPONSE, _RETRY, "Hoiio's answer was not JSON with a status field."),
)

STATUSES: dict[str, StatusInfo] = {
    status: StatusInfo(
        status,
        category,
        meaning,
        retry_now=status in {"error_rate_limit_exceeded", "error_session_not_ready", "error_internal_server_error"},
    )
    for status, category, meaning in _TABLE
}

_PARAM_MISSING = re.compile(r"^error_([a-z0-9_]+)_param_missing$")
_CREDENTIAL_PARAMS = frozenset({"app_id", "access_token"})


def classify(status: str) -> StatusInfo:
    """The category and meaning of a Hoiio ``status``; unknown ones are ``FLOW_ERROR``."""
    info = STATUSES.get(status)
    if info is not None:
        return info
    missing = _PARAM_MISSING.match(status)
    if missing:
        param = missing.group(1)
        if param in _CREDENTIAL_PARAMS:
            return StatusInfo(status, _AUTH, f"The request did not carry the {param} credential.")
        return StatusInfo(status, _FLOW, f"The required parameter {param} was missing.")
    return StatusInfo(status, _FLOW, "Hoiio answered with a status this engine does not know.", known=False)
