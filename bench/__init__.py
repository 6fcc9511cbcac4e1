"""Benchmarks: etld's figures next to the limit of the same work on the same machine.

`python -m bench` runs every benchmark module present; each also runs alone
(`python -m bench.<name> --help`) and writes its JSON to bench/results/.
"""

from __future__ import annotations
