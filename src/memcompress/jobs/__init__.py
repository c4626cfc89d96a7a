"""Jobs: compressing one user (``run_compression`` inline, ``compress_user`` under arq)."""

from memcompress.jobs.compress import CompressionDeps, FoldPolicy, compress_user, run_compression

__all__ = ["CompressionDeps", "FoldPolicy", "compress_user", "run_compression"]
