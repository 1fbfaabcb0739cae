"""Portcullis: the application behind function_app.py."""
