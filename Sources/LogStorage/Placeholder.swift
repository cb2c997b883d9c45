// LogStorage: partition logs on disk (issue 3).
