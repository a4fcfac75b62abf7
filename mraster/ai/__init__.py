"""AI copilots: an LLM advisor for trade candidates under a hard daily budget."""
