"""GitHub at the edge: webhook verification and parsing (pure), and later the REST client."""
