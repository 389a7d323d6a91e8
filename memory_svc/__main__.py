"""`python -m memory_svc`: serve memory_svc on its configured host and port."""

from common.runner import serve
from memory_svc.app import create_app
from memory_svc.settings import MemorySettings

if __name__ == "__main__":
    serve(create_app, MemorySettings)
