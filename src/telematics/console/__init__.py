"""The web console at `/console`: pages for the control centre, engineers and customers.

The browser is one more client of the `/v1` API: it signs in with a token, and from then on its
session cookie (`telematics.api.session_cookie`) stands for that token, so every role rule of the
API holds in the console unchanged. This package serves the page, its scripts and strings, the
sign-in and sign-out, and the live alarm feed (server-sent events); it holds no business rule of
its own. The browser libraries come from the npm registry (`scripts/build-console`).
"""
