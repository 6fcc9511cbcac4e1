"""Semantic search: the embedding model, the vector store and the embedding stage.

`model` finds the packaged weights, `convert` turns them into an ONNX graph (once,
cached), `embedder` runs it, `store` keeps the vectors (a Qdrant server, or Qdrant's
engine embedded in the process), `worker` is the embedding stage's handler and
`search` answers queries by meaning.
"""

from __future__ import annotations
