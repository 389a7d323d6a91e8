"""`python -m tools_svc`: serve tools_svc on its configured host and port."""

from common.runner import serve
from tools_svc.app import create_app
from tools_svc.settings import ToolsSettings

if __name__ == "__main__":
    serve(create_app, ToolsSettings)
