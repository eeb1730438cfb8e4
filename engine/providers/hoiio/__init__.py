"""Hoiio: notification parsing, block requests, signatures and the HTTP client."""
