-- wrk script for the soak: every request is a POST whose body comes from the
-- environment (SOAK_BODY; empty for POST /sync-data, whose input is its query),
-- so one script serves both endpoints.
wrk.method = "POST"
wrk.body = os.getenv("SOAK_BODY") or ""
wrk.headers["Content-Type"] = "application/json"
