"""Transport: listener, STOMP, HTTP, JSON-RPC dispatch, event delivery."""
