"""VoipNow UnifiedAPI (UAPI 3.0): conference invites (``phoneCalls/{user}/conferenceInvite``), their
status and hang-up. ``wire`` is the pure request/response mapping and the error-code table,
``client`` the HTTP client (``VoipNowClient``, a ``engine.providers.base.Provider``)."""
