"""Credit-risk domain code: contract, features, matrix, decision, monitoring."""
