"""Storage backends besides the embedded one, each behind the `rag_svc.storage` seam."""
