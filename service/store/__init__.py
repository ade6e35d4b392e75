"""What lives in Redis: the client and what its failures mean (`redis`), the login states,
sessions and codes (`stores`), the session index (`session_index`), the rate limits
(`ratelimit`); and the throwaway server `dev` and the tests start (`embedded`)."""
