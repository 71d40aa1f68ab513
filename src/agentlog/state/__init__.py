"""Local state: a LevelDB cache of folds over the log, with the offsets it has applied."""
