"""The local launcher behind `make up`: Redis and the eight services as processes."""
