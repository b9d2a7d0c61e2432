#!/usr/bin/env python3
"""Creates the example's table, anew: the numbers 1..N (default 1000) in odd.db."""
import os, sqlite3, sys

n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
db = sqlite3.connect(os.path.join(os.path.dirname(os.path.abspath(__file__)), "odd.db"))
db.execute("DROP TABLE IF EXISTS numbers")
db.execute("CREATE TABLE numbers (value INTEGER PRIMARY KEY, is_odd BOOLEAN)")
db.executemany("INSERT INTO numbers (value) VALUES (?)", ((v,) for v in range(1, n + 1)))
db.commit()
