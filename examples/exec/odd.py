#!/usr/bin/env python3
"""search_odd_numbers, one task per run: exec: [python3, odd.py]."""
import json, sys

task = json.load(sys.stdin)  # {"job", "key", "try", "worker", "deadline", "row"}
json.dump({"is_odd": task["row"]["value"] % 2 != 0}, sys.stdout)  # the columns to set
