"""Memory search as both sides run it: one check of the filters (:mod:`.filters`),
one ranking formula (:mod:`.ranking`), the result columns (:mod:`.columns`), and
the search over the server's PostgreSQL (:mod:`.server_search`)."""
