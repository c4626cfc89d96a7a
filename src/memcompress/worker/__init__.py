"""The long-running arq worker. Its ``WorkerSettings`` come with the queue work; the job it runs is
``memcompress.jobs.compress.compress_user``."""
