"""Product reviews: a relational store (SQLite by default, PostgreSQL via DATABASE_URL) and summaries
produced by the agent from analyzeReview results."""
