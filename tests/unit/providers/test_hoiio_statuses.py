"""Every documented Hoiio status has a category and a plain-English meaning."""

from __future__ import annotations

import pytest

from engine.providers.base import Category
from engine.providers.hoiio.statuses import STATUSES, classify

OK, RETRY, OVER, DEST, FLOW, AUTH = (
    Category.OK,
    Category.RETRY,
    Category.SESSION_OVER,
    Category.DESTINATION,
    Category.FLOW_ERROR,
    Category.AUTH,
)

# The statuses named in the Hoiio reference (common set, msg, tag, notify_url, session, destination,
# voice/call, conference/call, gather/dial extras), with the category the engine acts on.
DOCUMENTED = {
    "success_ok": OK,
    "error_invalid_http_method": FLOW,
    "error_malformed_params": FLOW,
    "error_invalid_access_token": AUTH,
    "error_invalid_app_id": AUTH,
    "error_rate_limit_exceeded": RETRY,
    "error_internal_server_error": RETRY,
    "error_msg_invalid_length": FLOW,
    "error_msg_cannot_convert_text": FLOW,
    "error_msg_download_failed": FLOW,
    "error_msg_invalid_file_format": FLOW,
    "error_msg_invalid_file_size": FLOW,
    "error_msg_invalid_url": FLOW,
    "error_msg_invalid_language": FLOW,
    "error_msg_invalid_gender": FLOW,
    "error_msg_invalid_xml": FLOW,
    "error_tag_invalid_length": FLOW,
    "error_invalid_notify_url": FLOW,
    "error_unable_to_resolve_notify_url": FLOW,
    "error_unable_to_complete_ssl_handshake_notify_url": FLOW,
    "error_invalid_session": OVER,
    "error_session_access_denied": OVER,
    "error_session_ended": OVER,
    "error_session_not_ready": RETRY,
    "error_session_not_on_hold": FLOW,
    "error_monitor_in_progress": FLOW,
    "error_dest_invalid": DEST,
    "error_dest_not_supported": DEST,
    "error_number_not_supported": DEST,
    "error_caller_id_invalid": DEST,
    "error_insufficient_credit": DEST,
    "error_concurrent_call_limit_reached": DEST,
    "error_not_allowed_for_trial": DEST,
    "error_dest1_invalid": DEST,
    "error_dest2_invalid": DEST,
    "error_dest1_not_supported": DEST,
    "error_dest2_not_supported": DEST,
    "error_same_dest1_dest2": DEST,
    "error_call_service_not_available": DEST,
    "error_invalid_room": FLOW,
    "error_invalid_max_digits": FLOW,
    "error_invalid_timeout": FLOW,
    "error_invalid_attempts": FLOW,
    "error_invalid_max_duration": FLOW,
    "error_max_duration_invalid": FLOW,
    "error_on_failure_invalid": FLOW,
    "error_notify_url_param_missing": FLOW,
    "error_session_param_missing": FLOW,
    "error_dest_param_missing": FLOW,
    "error_app_id_param_missing": AUTH,
    "error_access_token_param_missing": AUTH,
    # The client's own.
    "error_timeout": RETRY,
    "error_connection": RETRY,
    "error_bad_response": RETRY,
}


@pytest.mark.parametrize(("status", "category"), sorted(DOCUMENTED.items()))
def test_documented_status_category(status, category):
    info = classify(status)
    assert info.status == status
    assert info.category is category
    assert info.known
    assert info.meaning.endswith(".") and info.meaning[0].isupper()


def test_table_has_no_undocumented_extras_without_a_test():
    txn_ref_errors = {"error_invalid_txn_ref", "error_txn_ref_invalid", "error_txn_ref_access_denied"}
    assert set(STATUSES) <= set(DOCUMENTED) | txn_ref_errors


def test_only_transient_statuses_are_retried_at_once():
    retried = {s for s, info in STATUSES.items() if info.retry_now}
    assert retried == {"error_rate_limit_exceeded", "error_session_not_ready", "error_internal_server_error"}


def test_unknown_status_is_a_flow_error_keeping_the_raw_status():
    info = classify("error_brand_new_thing")
    assert info.category is Category.FLOW_ERROR
    assert info.status == "error_brand_new_thing"
    assert not info.known
    assert not info.retry_now


def test_missing_param_meaning_names_the_param():
    assert "max_digits" in classify("error_max_digits_param_missing").meaning
