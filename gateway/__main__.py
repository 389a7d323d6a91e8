"""`python -m gateway`: serve gateway on its configured host and port."""

from common.runner import serve
from gateway.app import create_app
from gateway.settings import GatewaySettings

if __name__ == "__main__":
    serve(create_app, GatewaySettings)
