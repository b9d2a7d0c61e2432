#!/bin/sh
# search_odd_numbers, one task per run, in POSIX sh: exec: [./odd.sh].
# The task arrives as one line of JSON on stdin; with no JSON parser at
# hand, sed picks the value out of it (the row's keys come sorted, and
# "value" is the only one of that name).
task=$(cat)
value=$(printf '%s\n' "$task" | sed -n 's/.*"value":\(-\{0,1\}[0-9][0-9]*\).*/\1/p')
if [ -z "$value" ]; then
  echo "no integer value in the task: $task" >&2
  exit 100 # failed for good: no retry will find one
fi
if [ $((value % 2)) -ne 0 ]; then
  echo '{"is_odd": true}'
else
  echo '{"is_odd": false}'
fi
