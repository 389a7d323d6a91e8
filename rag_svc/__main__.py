"""`python -m rag_svc`: serve rag_svc on its configured host and port."""

from common.runner import serve
from rag_svc.app import create_app
from rag_svc.settings import RagSettings

if __name__ == "__main__":
    serve(create_app, RagSettings)
