"""`python -m creative_svc`: serve creative_svc on its configured host and port."""

from common.runner import serve
from creative_svc.app import create_app
from creative_svc.settings import CreativeSettings

if __name__ == "__main__":
    serve(create_app, CreativeSettings)
