"""Operations on the log: replay, verification, dead-letter redrive."""
