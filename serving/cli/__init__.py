"""The `omni` command line: one module per command or command group, named after it
(`data`, `features`, `train`, `models`, `snapshot`, `serve`, `score`, `run`; `main` ties
them together). These modules parse arguments and print; the work is done by library
functions in features/, training/ and serving/, which notebooks call the same way."""
