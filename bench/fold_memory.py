"""Per-user fold cost vs history length with the offline summariser and large pages (``make bench-fold``).

The same measurement as ``bench/per_user_cost.py`` (which it runs), with that script's defaults changed
to the ones this script always had: the extractive summariser (no LLM at all) and ``--batch-size 5000``.
It prints wall time, chunks, Mongo round trips and the peak RSS growth of the process that folds.

    .venv/bin/python bench/fold_memory.py --events 1000 10000 100000

SecantusDB does not push sort/limit down (every page query reads all of the user's remaining events
in its key range), so large histories use a large --batch-size here; on MongoDB the
(user_id, created_at, _id) index makes each page a bounded range read.
"""

from __future__ import annotations

import per_user_cost

if __name__ == "__main__":
    per_user_cost.main(default_batch_size=5000, default_summarizer="extractive", doc=__doc__)
