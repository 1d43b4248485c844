#!/usr/bin/env bash
echo "The demo is not built yet (issue: 'The main job in one command'). Run 'npm test' for the test suite." >&2
exit 1
