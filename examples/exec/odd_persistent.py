#!/usr/bin/env python3
"""search_odd_numbers as a persistent process (mode: persistent).

Pampa starts one per worker slot and keeps it: each task comes in as one
line of JSON on stdin, and each answer goes out as one line on stdout,
flushed. stdin closes when the worker stops.
"""
import json, sys


class Final(Exception):
    """A failure no retry will fix: the task fails for good."""


def process(task):
    value = task["row"]["value"]
    if not isinstance(value, int):
        raise Final(f"value {value!r} is not an integer")
    return {"is_odd": value % 2 != 0}  # the columns to set


for line in sys.stdin:
    try:
        answer = {"ok": True, "set": process(json.loads(line))}
    except Exception as e:
        answer = {"ok": False, "error": f"{type(e).__name__}: {e}", "final": isinstance(e, Final)}
    print(json.dumps(answer), flush=True)
