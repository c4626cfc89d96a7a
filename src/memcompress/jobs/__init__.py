"""Jobs: the compression of one user (``compress``)."""

from memcompress.jobs.compress import CompressionDeps, FoldPolicy, compress

__all__ = ["CompressionDeps", "FoldPolicy", "compress"]
