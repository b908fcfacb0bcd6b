"""starter.py's commands, one module per group: case, feedback, risk, operator, admin.

app.py holds the tree and the exit codes, calls.py what the commands ask of hallflow (also used
by demo.py and the benchmark), render.py how the answers read.
"""
