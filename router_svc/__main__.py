"""`python -m router_svc`: serve router_svc on its configured host and port."""

from common.runner import serve
from router_svc.app import create_app
from router_svc.settings import RouterSettings

if __name__ == "__main__":
    serve(create_app, RouterSettings)
