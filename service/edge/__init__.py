"""The edge: one ASGI pass per request (`asgi.Edge`), outermost, and what it applies: the
request's classification (`classify`), the listener and plain-http rules, CORS and CSRF, the
size and in-flight limits, the proxied calls (`proxy`), and the one way out for errors
(`respond`, with the bilingual page, `pages`)."""
