"""`python -m reasoning_svc`: serve reasoning_svc on its configured host and port."""

from common.runner import serve
from reasoning_svc.app import create_app
from reasoning_svc.settings import ReasoningSettings

if __name__ == "__main__":
    serve(create_app, ReasoningSettings)
