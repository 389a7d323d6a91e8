"""rag_svc.

Ingestion, embeddings, FAISS + BM25 hybrid search, cross-encoder rerank, cited answers.
"""
