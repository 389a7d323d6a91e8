"""`python -m moe_svc`: serve moe_svc on its configured host and port."""

from common.runner import serve
from moe_svc.app import create_app
from moe_svc.settings import MoeSettings

if __name__ == "__main__":
    serve(create_app, MoeSettings)
