"""Who may see the dashboard: the token, the login form, the session cookie, CSRF on every form."""

from __future__ import annotations

import flask
from admin_support import ADMIN_TOKEN, admin_app, csrf_of, login, text_of

from tests.integration.conftest import make_app

BEARER = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def test_without_admin_token_the_dashboard_is_off_with_a_clear_page(tmp_path):
    h = make_app(f"sqlite:///{tmp_path / 'off.sqlite3'}")
    for path in ("/admin/", "/admin/login", "/admin/calls", "/admin/flows/everything"):
        response = h.client.get(path, headers=BEARER)
        assert response.status_code == 404, path
        page = text_of(response)
        assert "The dashboard is off" in page and "IVR_ADMIN_TOKEN" in page
    assert h.client.post("/admin/reload", headers=BEARER).status_code == 404
    assert h.client.post("/admin/login", data={"token": ""}).status_code == 404
    assert h.client.get("/healthz").status_code == 200  # the rest of the app is untouched
    assert h.client.get("/admin/static/admin.css").status_code == 200  # the "off" page keeps its style


def test_pages_need_credentials(admin_sqlite):
    client = admin_sqlite.client
    response = client.get("/admin/calls?x=1")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/admin/login?next=")
    assert response.headers["Location"] == "/admin/login?next=/admin/calls?x%3D1"
    for path in ("/admin/", "/admin/counts", "/admin/flows/everything", "/admin/calls/C1",
                 "/admin/calls/C1/replay.yaml"):
        assert client.get(path).status_code == 302, path
    refused = client.post("/admin/reload")
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert admin_sqlite.service.flows.reloads == 1  # not reloaded


def test_bearer_token(admin_sqlite):
    client = admin_sqlite.client
    assert client.get("/admin/", headers=BEARER).status_code == 200
    for header in ("Bearer wrong-token", f"Bearer {ADMIN_TOKEN}x", "Bearer", f"bearer {ADMIN_TOKEN[:-1]}"):
        response = client.get("/admin/", headers={"Authorization": header})
        assert response.status_code == 401, header
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    # another scheme (say, a proxy's own Basic login) is not a dashboard login: the form is
    assert client.get("/admin/", headers={"Authorization": f"Basic {ADMIN_TOKEN}"}).status_code == 302
    # a script needs no CSRF token: it sends no cookie a browser could replay
    response = client.post("/admin/reload", headers=BEARER)
    assert response.status_code == 302
    assert admin_sqlite.service.flows.reloads == 2


def test_login_with_the_right_token_sets_a_strict_httponly_cookie(admin_sqlite):
    client = admin_sqlite.client
    response = login(client)
    assert response.status_code == 302 and response.headers["Location"] == "/admin/"
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("ivr_admin=")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/admin" in cookie
    assert "Secure" not in cookie  # plain HTTP here; see the HTTPS test
    assert ADMIN_TOKEN not in cookie
    page = client.get("/admin/")
    assert page.status_code == 200 and "Overview" in text_of(page)
    assert "Log out" in text_of(page)


def test_cookie_is_secure_over_https(admin_sqlite):
    client = admin_sqlite.client
    form = client.get("/admin/login", base_url="https://ivr.example.com")
    response = client.post("/admin/login", base_url="https://ivr.example.com",
                           data={"token": ADMIN_TOKEN, "csrf_token": csrf_of(form.data)})
    assert response.status_code == 302
    assert "Secure" in response.headers["Set-Cookie"]


def test_wrong_token_is_refused(admin_sqlite):
    client = admin_sqlite.client
    response = login(client, token="not-the-token")
    assert response.status_code == 401
    assert "not the dashboard token" in text_of(response)
    assert client.get("/admin/").status_code == 302
    assert login(client, token="").status_code == 401


def test_login_form_needs_its_csrf_token(admin_sqlite):
    client = admin_sqlite.client
    client.get("/admin/login")
    response = client.post("/admin/login", data={"token": ADMIN_TOKEN})
    assert response.status_code == 400
    assert "expired" in text_of(response)
    assert client.get("/admin/").status_code == 302


def test_login_does_not_redirect_off_the_dashboard(admin_sqlite):
    client = admin_sqlite.client
    for target in ("https://evil.example/", "//evil.example/admin", "/hoiio/answer", "/admin\\..\\x"):
        form = client.get("/admin/login")
        response = client.post("/admin/login", data={"token": ADMIN_TOKEN, "csrf_token": csrf_of(form.data),
                                                      "next": target})
        assert response.headers["Location"] == "/admin/", target
        client.post("/admin/logout", data={"csrf_token": csrf_of(client.get("/admin/").data)})


def test_a_tampered_cookie_is_not_a_login(admin_sqlite):
    client = admin_sqlite.client
    login(client)
    cookie = client.get_cookie("ivr_admin", path="/admin")
    client.set_cookie("ivr_admin", cookie.value[:-3] + "xyz", path="/admin")
    assert client.get("/admin/").status_code == 302


def test_changing_the_token_logs_everybody_out(tmp_path):
    url = f"sqlite:///{tmp_path / 'rot.sqlite3'}"
    first = admin_app(url)
    login(first.client)
    cookie = first.client.get_cookie("ivr_admin", path="/admin")
    second = admin_app(url, admin_token="a-new-token")
    second.client.set_cookie("ivr_admin", cookie.value, path="/admin")
    assert second.client.get("/admin/").status_code == 302
    third = admin_app(url)  # same token, same secret: the cookie still works
    third.client.set_cookie("ivr_admin", cookie.value, path="/admin")
    assert third.client.get("/admin/").status_code == 200


def test_forms_need_the_sessions_csrf_token(admin_sqlite):
    client = admin_sqlite.client
    login(client)
    reloads = admin_sqlite.service.flows.reloads
    assert client.post("/admin/reload").status_code == 400
    assert client.post("/admin/reload", data={"csrf_token": "forged"}).status_code == 400
    assert client.post("/admin/logout", data={}).status_code == 400
    assert admin_sqlite.service.flows.reloads == reloads
    token = csrf_of(client.get("/admin/").data)
    response = client.post("/admin/reload", data={"csrf_token": token, "next": "/admin/calls"})
    assert response.status_code == 302 and response.headers["Location"] == "/admin/calls"
    assert admin_sqlite.service.flows.reloads == reloads + 1
    assert (admin_sqlite.service.settings.flows_dir / ".reload").is_file()  # the other workers follow
    assert "Flows reloaded" in text_of(client.get("/admin/calls"))


def test_csrf_token_of_another_session_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'two.sqlite3'}"
    h = admin_app(url)
    login(h.client)
    other = h.app.test_client()
    login(other)
    foreign = csrf_of(other.get("/admin/").data)
    assert h.client.post("/admin/reload", data={"csrf_token": foreign}).status_code == 400


def test_logout(admin_sqlite):
    client = admin_sqlite.client
    login(client)
    response = client.post("/admin/logout", data={"csrf_token": csrf_of(client.get("/admin/").data)})
    assert response.status_code == 302 and response.headers["Location"] == "/admin/login"
    assert client.get("/admin/").status_code == 302


def test_security_headers(admin_sqlite):
    response = admin_sqlite.client.get("/admin/", headers=BEARER)
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp and "frame-ancestors 'none'" in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Cache-Control"] == "no-store"
    css = admin_sqlite.client.get("/admin/static/admin.css")
    assert css.status_code == 200 and b"@media" in css.data


def test_wrong_tokens_from_one_address_are_refused_for_a_while(admin_sqlite):
    """Ten wrong tokens (form or bearer) from one address: then even the right one is refused from
    there, with 429 and Retry-After; other addresses still get in."""
    client = admin_sqlite.client
    attacker = {"REMOTE_ADDR": "203.0.113.9"}
    form = client.get("/admin/login")
    for n in range(10):
        data = {"token": f"guess-{n}", "csrf_token": csrf_of(form.data)}
        if n % 2:
            response = client.get("/admin/", headers={"Authorization": f"Bearer guess-{n}"}, environ_base=attacker)
        else:
            response = client.post("/admin/login", data=data, environ_base=attacker)
        assert response.status_code == 401, n
    right = {"token": ADMIN_TOKEN, "csrf_token": csrf_of(form.data)}
    refused = client.post("/admin/login", data=right, environ_base=attacker)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    assert "Too many wrong tokens" in text_of(refused)
    bearer = client.get("/admin/", headers=BEARER, environ_base=attacker)
    assert bearer.status_code == 429
    assert client.get("/admin/", headers=BEARER, environ_base={"REMOTE_ADDR": "198.51.100.7"}).status_code == 200
    assert client.get("/admin/login", environ_base=attacker).status_code == 200  # the form itself still shows


def test_the_session_is_opened_only_under_admin(admin_sqlite):
    """The cookie's path is /admin: the webhooks and the API get Flask's null session (nothing to
    sign or parse per notification), even when a client sends the cookie there anyway."""
    app = admin_sqlite.app
    interface = app.session_interface
    login(admin_sqlite.client)
    cookie = admin_sqlite.client.get_cookie("ivr_admin", path="/admin")
    header = {"Cookie": f"ivr_admin={cookie.value}"}
    for path in ("/admin", "/admin/", "/admin/calls"):
        with app.test_request_context(path, headers=header):
            opened = interface.open_session(app, flask.request)
            assert not interface.is_null_session(opened), path
            assert opened.get("admin"), path  # the login the cookie carries
    for path in ("/hoiio/answer/auto_attendant", "/api/calls", "/administrator", "/healthz"):
        with app.test_request_context(path, headers=header):
            assert interface.is_null_session(interface.open_session(app, flask.request)), path
