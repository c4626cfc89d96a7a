"""``memcompress web``: read-only pages over the queue and the store (:mod:`memcompress.web.app`)."""
