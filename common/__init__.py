"""Shared package of the platform's services.

Settings, the error shape, the service-to-service HTTP client, logging,
middleware (request id, metrics), health routes and the cross-service wire
models (`common.contracts`). It never imports a service.
"""
