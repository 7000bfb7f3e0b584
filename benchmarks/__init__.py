"""Benchmarks of olympipe_typed against its peers: ``python -m benchmarks.run`` (``make bench``).

Each system x workload runs in a fresh subprocess (``python -m benchmarks.bench_one``), so no
system's imports, workers or memory leak into another's figures.
"""
