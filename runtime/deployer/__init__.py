"""Deploys approved model versions to the endpoint (see handler.py)."""
