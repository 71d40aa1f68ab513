"""The router service: turns each question into a plan (planners live in planner.py)."""
