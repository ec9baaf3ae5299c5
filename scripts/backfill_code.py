"""Give the records of a results store written before runs recorded their source hash (`code`) the
hash of the code they ran at their own commit, from this checkout's git history (`source.source_hash`):

    python scripts/backfill_code.py results

Only the `code` field is added; nothing that was measured changes. Records from a dirty or unknown
tree are left as they are (the leaderboards never show them).
"""
from __future__ import annotations

import sys
from pathlib import Path

from editbench.source import source_hash
from editbench.results import add_source_hashes

if __name__ == "__main__":
    store = Path(sys.argv[1] if len(sys.argv) > 1 else "results")
    added = add_source_hashes(store, lambda record: source_hash(record["method"], record["task"], record["commit"]))
    print(f"{store}: source hash added to {added} record(s)")
